"""OpenAIBackend against a real vLLM API server process (not only ``er serve``): same records as HF.

Marker ``vllm`` (see ``tests/engine/test_vllm_real.py``). The server runs the tiny model's
vLLM variant in float32 on 127.0.0.1; greedy decoding must match HFBackend token for token.
"""

from __future__ import annotations

import math

import pytest

from er_env.backends.base import SamplingConfig
from er_env.budget import FORCED_LOGPROB, Budget

pytestmark = pytest.mark.vllm

GREEDY = SamplingConfig(temperature=0)
FIELDS = ("completion_ids", "env_mask", "forced_mask", "thinking_tokens", "solution_tokens", "think_finish_reason",
          "finish_reason")


@pytest.fixture(scope="module")
def hf(vllm_tiny_dir):
    from er_env.backends.hf import HFBackend

    return HFBackend(str(vllm_tiny_dir), device="cpu", batch_size=8)


@pytest.mark.parametrize("budget", [Budget(think=8, solution=6), Budget(think=200, solution=3),
                                    Budget(think=200, solution=200), Budget.unconstrained(300)])
def test_openai_backend_on_real_vllm_server(vllm_server, hf, budget):
    from er_env.backends.openai import OpenAIBackend
    from er_tools.tiny_model import tiny_prompts

    url, model = vllm_server
    backend = OpenAIBackend(url, model, tokenizer=model, max_concurrency=4)
    assert backend.context_length in (None, 512)
    prompts = [hf.chat_prompt(q) for q in tiny_prompts(5)]
    ours, theirs = backend.generate(prompts, budget, GREEDY), hf.generate(prompts, budget, GREEDY)
    for a, b in zip(ours, theirs, strict=True):
        for field in FIELDS:
            assert getattr(a, field) == getattr(b, field), field
        for lp_a, lp_b, forced in zip(a.logprobs, b.logprobs, a.forced_mask, strict=True):
            assert lp_a == FORCED_LOGPROB if forced else math.isclose(lp_a, lp_b, abs_tol=2e-4)
    backend.close()
