"""VLLMBackend: the translation of the budget protocol into vLLM's offline API.

vLLM needs CUDA, so these tests put a fake ``vllm`` module in ``sys.modules``: its
``LLM.generate`` takes token-id prompts and ``SamplingParams`` and answers with
``RequestOutput``/``CompletionOutput``-shaped objects, backed by the real tiny model
(:class:`~er_serving.server.generation.TransformersGenerator`, which follows vLLM's
stop-id, stop-string and ``thinking_token_budget`` semantics). Greedy results must
equal HFBackend's token for token. Where vLLM itself is importable (a vLLM venv),
the fake uses vLLM's own ``SamplingParams``, ``CompletionOutput``,
``RequestOutput`` and ``Logprob`` classes, so field names are checked against them.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import types
from pathlib import Path

import pytest

from er_env.backends.base import BackendError, DependencyNotInstalled, SamplingConfig
from er_env.budget import Budget

GREEDY = SamplingConfig(temperature=0)
SP_FIELDS = ("n", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "stop_token_ids",
             "include_stop_str_in_output", "logprobs", "skip_special_tokens", "thinking_token_budget")

try:  # vLLM's own classes, where installed
    from vllm.logprobs import Logprob as _Logprob
    from vllm.outputs import CompletionOutput as _CompletionOutput
    from vllm.outputs import RequestOutput as _RequestOutput
    from vllm.sampling_params import SamplingParams as _RealSamplingParams

    REAL_VLLM = True
except ImportError:
    REAL_VLLM = False


class FakeSamplingParams:
    """vLLM ``SamplingParams`` stand-in: same field names, rejects unknown ones."""

    __struct_fields__ = SP_FIELDS

    def __init__(self, **kwargs):
        unknown = set(kwargs) - set(self.__struct_fields__)
        if unknown:
            raise TypeError(f"SamplingParams got unexpected fields {sorted(unknown)}")
        defaults = dict(n=1, max_tokens=16, temperature=1.0, top_p=1.0, top_k=0, seed=None, stop=[],
                        stop_token_ids=[], include_stop_str_in_output=False, logprobs=None,
                        skip_special_tokens=True, thinking_token_budget=None)
        for name in self.__struct_fields__:
            setattr(self, name, kwargs.get(name, defaults[name]))


@dataclasses.dataclass
class _FakeLogprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclasses.dataclass
class _FakeCompletionOutput:
    index: int
    text: str
    token_ids: list
    cumulative_logprob: float | None
    logprobs: list | None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclasses.dataclass
class _FakeRequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list
    prompt_logprobs: list | None
    outputs: list
    finished: bool


@dataclasses.dataclass
class FakeReasoningConfig:
    reasoning_parser: str = ""
    reasoning_start_str: str = ""
    reasoning_end_str: str = ""


class FakeLLM:
    """``vllm.LLM`` stand-in: greedy/seeded decoding of the tiny model, vLLM output shapes."""

    instances: list = []

    def __init__(self, model, **kwargs):
        from er_serving.server.openai_server import load_generator

        self.kwargs = kwargs
        self.calls: list[tuple[list, list]] = []
        self.gen = load_generator(model)
        config = types.SimpleNamespace(max_model_len=self.gen.max_model_len)
        self.llm_engine = types.SimpleNamespace(model_config=config)
        FakeLLM.instances.append(self)

    def get_tokenizer(self):
        return self.gen.tokenizer

    def generate(self, prompts, sampling_params=None, *, use_tqdm=True):
        from er_serving.server.generation import GenerationParams

        assert use_tqdm is False
        assert isinstance(sampling_params, list) and len(sampling_params) == len(prompts)
        self.calls.append((prompts, sampling_params))
        results = []
        for i, (prompt, sp) in enumerate(zip(prompts, sampling_params, strict=True)):
            assert set(prompt) == {"prompt_token_ids"}, "prompts must be token ids"
            if sp.thinking_token_budget is not None and not (
                {"reasoning_config", "reasoning_parser"} & set(self.kwargs)
            ):
                raise ValueError("thinking_token_budget is set but reasoning_config is not configured.")
            res = self.gen.generate(prompt["prompt_token_ids"], GenerationParams(
                max_tokens=sp.max_tokens, temperature=sp.temperature, top_p=sp.top_p, top_k=sp.top_k, seed=sp.seed,
                stop_token_ids=tuple(sp.stop_token_ids or ()), stop=tuple(sp.stop or ()),
                include_stop_str_in_output=sp.include_stop_str_in_output,
                skip_special_tokens=sp.skip_special_tokens, thinking_token_budget=sp.thinking_token_budget))
            lps = None
            if sp.logprobs is not None:
                logprob_cls = _Logprob if REAL_VLLM else _FakeLogprob
                lps = [{t: logprob_cls(logprob=lp, rank=1, decoded_token=None)}
                       for t, lp in zip(res.token_ids, res.logprobs, strict=True)]
            out_cls = _CompletionOutput if REAL_VLLM else _FakeCompletionOutput
            req_cls = _RequestOutput if REAL_VLLM else _FakeRequestOutput
            out = out_cls(index=0, text=res.text, token_ids=list(res.token_ids), cumulative_logprob=sum(res.logprobs),
                          logprobs=lps, finish_reason=res.finish_reason, stop_reason=res.stop_reason)
            results.append(req_cls(request_id=str(i), prompt=None, prompt_token_ids=prompt["prompt_token_ids"],
                                   prompt_logprobs=None, outputs=[out], finished=True))
        return results


@pytest.fixture
def fake_vllm(monkeypatch):
    """Install a fake ``vllm`` package (with vLLM's real classes where installed)."""
    module = types.ModuleType("vllm")
    module.__version__ = "fake"
    module.LLM = FakeLLM
    module.SamplingParams = _RealSamplingParams if REAL_VLLM else FakeSamplingParams
    config = types.ModuleType("vllm.config")
    reasoning = types.ModuleType("vllm.config.reasoning")
    if REAL_VLLM:
        from vllm.config.reasoning import ReasoningConfig
        reasoning.ReasoningConfig = ReasoningConfig
    else:
        reasoning.ReasoningConfig = FakeReasoningConfig
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.config", config)
    monkeypatch.setitem(sys.modules, "vllm.config.reasoning", reasoning)
    FakeLLM.instances = []
    return module


def _assert_same(got, want):
    for g, w in zip(got, want, strict=True):
        assert g.completion_ids == w.completion_ids
        assert g.forced_mask == w.forced_mask and g.env_mask == w.env_mask
        assert (g.thinking_tokens, g.solution_tokens) == (w.thinking_tokens, w.solution_tokens)
        assert (g.think_finish_reason, g.finish_reason) == (w.think_finish_reason, w.finish_reason)
        assert g.logprobs == pytest.approx(w.logprobs, abs=1e-4)
        assert g.text == w.text


@pytest.fixture(scope="module")
def free_run(backend, prompts):
    return backend.generate(prompts, Budget.unconstrained(), GREEDY)


def _budget(kind, free_run):
    if kind == "binding":
        return Budget(think=6, solution=4)
    if kind == "non-binding":
        return Budget(think=max(r.thinking_tokens for r in free_run) + 2,
                      solution=max(r.solution_tokens for r in free_run) + 2)
    return Budget.unconstrained()


# ------------------------------------------------------------------ imports
def test_module_imports_without_vllm_and_construction_names_the_extra(monkeypatch):
    code = ("import sys; sys.modules['vllm'] = None\n"
            "import er_env.backends.vllm as m\n"
            "try:\n    m.VLLMBackend('some/model')\n"
            "except m.DependencyNotInstalled as e:\n    print('ERR', e)\n")
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "ERR" in proc.stdout and "pip install 'elastic-reasoning-gym[vllm]'" in proc.stdout
    monkeypatch.setitem(sys.modules, "vllm", None)
    from er_env.backends.vllm import VLLMBackend

    with pytest.raises(DependencyNotInstalled, match=r"elastic-reasoning-gym\[vllm\]"):
        VLLMBackend("some/model")


# ------------------------------------------------------------- equivalence
@pytest.mark.parametrize("kind", ["binding", "non-binding", "unconstrained"])
def test_greedy_equals_hf_token_for_token(fake_vllm, tiny_model_dir, backend, prompts, free_run, kind):
    from er_env.backends.vllm import VLLMBackend

    budget = _budget(kind, free_run)
    got = VLLMBackend(str(tiny_model_dir)).generate(prompts, budget, GREEDY)
    _assert_same(got, backend.generate(prompts, budget, GREEDY))
    if kind == "binding":
        assert all(r.thinking_truncated for r in got)
    if kind == "non-binding":
        assert [r.completion_ids for r in got] == [r.completion_ids for r in free_run]


def test_two_token_id_calls_with_vllm_sampling_params(fake_vllm, tiny_model_dir, prompts):
    from er_env.backends.vllm import VLLMBackend

    vb = VLLMBackend(str(tiny_model_dir), dtype="float32")
    llm = FakeLLM.instances[-1]
    assert llm.kwargs == {"enable_prefix_caching": True, "dtype": "float32"}
    assert vb.context_length == llm.gen.max_model_len
    out = vb.generate(prompts, Budget(think=5, solution=3), SamplingConfig(temperature=0.8, top_k=4, seed=11))
    assert len(llm.calls) == 2
    (p1, sp1), (p2, sp2) = llm.calls
    assert [p["prompt_token_ids"] for p in p1] == [list(p) for p in prompts]
    second = [list(p) + list(r.completion_ids[:6]) for p, r in zip(prompts, out, strict=True)]
    assert [p["prompt_token_ids"] for p in p2] == second
    sp = vb.special
    for i, s in enumerate(sp1):
        assert s.max_tokens == 5 and list(s.stop_token_ids) == [*sp.think_end, *sorted(sp.eos)]
        assert (s.logprobs, s.skip_special_tokens, s.top_k, s.seed) == (0, False, 4, 11 + i)
        assert s.temperature == pytest.approx(0.8) and s.thinking_token_budget is None
    for s in sp2:
        assert s.max_tokens == 3 and list(s.stop_token_ids) == sorted(sp.eos)


def test_multi_token_think_end_uses_stop_string(fake_vllm, tiny_multi_dir):
    from er_env.backends.hf import HFBackend
    from er_env.backends.vllm import VLLMBackend

    hf = HFBackend(str(tiny_multi_dir), device="cpu")
    assert len(hf.special.think_end) > 1
    ps = [hf.chat_prompt("What is 3 + 4 + 5?"), hf.chat_prompt("Write a function f that reverses a string s.")]
    vb = VLLMBackend(str(tiny_multi_dir))
    for budget in (Budget(think=6, solution=5), Budget(think=200, solution=200)):
        _assert_same(vb.generate(ps, budget, GREEDY), hf.generate(ps, budget, GREEDY))
    first = FakeLLM.instances[-1].calls[0][1][0]
    assert list(first.stop) == ["</think>"] and first.include_stop_str_in_output


# -------------------------------------------------------- native thinking budget
def test_native_thinking_budget_one_call_same_result(fake_vllm, tiny_model_dir, backend, prompts, free_run):
    from er_env.backends.vllm import VLLMBackend

    vb = VLLMBackend(str(tiny_model_dir), use_native_thinking_budget=True)
    llm = FakeLLM.instances[-1]
    cfg = llm.kwargs["reasoning_config"]
    assert (cfg.reasoning_start_str, cfg.reasoning_end_str) == ("<think>", "</think>")
    budget = Budget(think=6, solution=4)
    _assert_same(vb.generate(prompts, budget, GREEDY), backend.generate(prompts, budget, GREEDY))
    assert len(llm.calls) == 1  # vLLM forced </think> where the tracker does: no second call
    sp = llm.calls[0][1][0]
    assert sp.thinking_token_budget == 6 + 1  # R1 prompts end with "<think>\n": vLLM counts the "\n"
    assert sp.max_tokens == 6 + 1 + 4 and list(sp.stop_token_ids) == sorted(vb.special.eos)
    loose = _budget("non-binding", free_run)
    _assert_same(vb.generate(prompts, loose, GREEDY), backend.generate(prompts, loose, GREEDY))


def test_native_budget_disagreeing_with_tracker_falls_back_to_second_call(fake_vllm, tiny_model_dir, backend):
    from er_env.backends.vllm import VLLMBackend

    vb = VLLMBackend(str(tiny_model_dir), use_native_thinking_budget=True)
    bare = [vb.encode("What is 1 + 2?")]  # no <think> in the prompt: vLLM's count never starts
    budget = Budget(think=5, solution=3)
    _assert_same(vb.generate(bare, budget, GREEDY), backend.generate(bare, budget, GREEDY))
    assert len(FakeLLM.instances[-1].calls) == 2


def test_native_budget_unsupported_is_clear_error(fake_vllm, tiny_model_dir):
    from er_env.backends.vllm import VLLMBackend

    class OldSamplingParams(FakeSamplingParams):
        __struct_fields__ = tuple(f for f in SP_FIELDS if f != "thinking_token_budget")

    fake_vllm.SamplingParams = OldSamplingParams
    with pytest.raises(BackendError, match="thinking_token_budget.*use_native_thinking_budget=False"):
        VLLMBackend(str(tiny_model_dir), use_native_thinking_budget=True)


# -------------------------------------------------------------------- errors
def test_engine_failure_is_backend_error(fake_vllm, tiny_model_dir, prompts, monkeypatch):
    from er_env.backends.vllm import VLLMBackend

    vb = VLLMBackend(str(tiny_model_dir))
    monkeypatch.setattr(vb.llm, "generate", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("CUDA OOM")))
    with pytest.raises(BackendError, match="vLLM generate failed: RuntimeError: CUDA OOM"):
        vb.generate(prompts, Budget(think=4, solution=4), GREEDY)


def test_ready_llm_object_and_kwargs(fake_vllm, tiny_model_dir, backend, prompts):
    from er_env.backends.vllm import VLLMBackend

    llm = FakeLLM(str(tiny_model_dir))
    with pytest.raises(ValueError, match="only apply when VLLMBackend builds the LLM"):
        VLLMBackend(llm, dtype="float16")
    vb = VLLMBackend(llm, tokenizer=backend.tokenizer)
    budget = Budget(think=4, solution=4)
    _assert_same(vb.generate(prompts, budget, GREEDY), backend.generate(prompts, budget, GREEDY))
