"""Nested budget sweeps give every budget exactly what an independent run gives."""

from __future__ import annotations

import pytest

from er_env.backends.base import SamplingConfig
from er_env.budget import Budget
from er_env.eval.methods import get_method
from er_env.eval.nested import NestedStats
from tests.eval.fakes import HashSampler

BUDGETS = [Budget(4, 6), Budget(16, 6), Budget(8, 3), Budget(24, 6)]


def _same(a, b) -> None:
    assert len(a) == len(b)
    for ra, rb in zip(a, b, strict=True):
        for x, y in zip(ra, rb, strict=True):
            assert (x.completion_ids, x.forced_mask, x.thinking_tokens, x.solution_tokens, x.thinking_truncated,
                    x.think_finish_reason, x.finish_reason) == (
                y.completion_ids, y.forced_mask, y.thinking_tokens, y.solution_tokens, y.thinking_truncated,
                y.think_finish_reason, y.finish_reason)


def _continues(backend: HashSampler, seed: int, g) -> None:
    """The solution tokens are the sampler's continuation of the record's own prefix (its forced text included)."""
    start = len(g.completion_ids) - g.solution_tokens
    prefix = list(g.prompt_ids) + list(g.completion_ids[:start])
    for tok in g.completion_ids[start:]:
        assert tok == backend._next(seed, prefix)
        prefix.append(tok)


@pytest.mark.parametrize("method", ["elastic", "s1", "qwen3", "truncation"])
@pytest.mark.parametrize("think_end,context", [((9,), None), ((8, 9), None), ((9,), 30)])
def test_fixed_seed_sampler_nested_equals_independent(method, think_end, context):
    backend = HashSampler(think_end=think_end, context_length=context)
    prompts = [[1, 5, k, 7] for k in range(40)]
    m = get_method(method)
    sampling = SamplingConfig(temperature=0.6, seed=123)
    nested = m.generate(backend, [prompts] * len(BUDGETS), BUDGETS, sampling, nested=True, stats=NestedStats())
    indep = m.generate(backend, [prompts] * len(BUDGETS), BUDGETS, sampling, nested=False, stats=NestedStats())
    _same(nested, indep)
    reasons = {g.think_finish_reason for row in nested for g in row}
    if method != "truncation":  # the sampler reaches every way a thinking phase can end
        assert {"budget", "think_end", "eos"} <= reasons, reasons
    forced = backend.encode(m.transition) if getattr(m, "transition", None) else list(backend.special.think_end)
    for b, row in zip(BUDGETS, nested, strict=True):
        for g in row:
            if method == "truncation":
                assert not any(g.forced_mask) and g.thinking_tokens + g.solution_tokens <= b.think + b.solution
                continue
            assert g.thinking_tokens <= b.think and g.solution_tokens <= b.solution
            cut = list(g.completion_ids[g.thinking_tokens : g.thinking_tokens + len(forced)])
            if g.thinking_truncated and method != "elastic":  # the whole transition text is forced at the cut
                assert cut == forced and sum(g.forced_mask) == len(forced)
            elif g.thinking_truncated:  # elastic: </think> completed (a partial delimiter already sampled is kept)
                assert sum(g.forced_mask) >= 1 and list(g.completion_ids[: g.thinking_tokens + sum(g.forced_mask)]
                                                        )[-len(forced):] == forced
            _continues(backend, 123, g)
    cost_n = sum(g.generated_tokens for row in nested for g in row)
    cost_i = sum(g.generated_tokens for row in indep for g in row)
    assert cost_n < cost_i


@pytest.mark.parametrize("method", ["elastic", "s1"])
def test_eos_in_thinking_end_nests_too(method):
    """With Budget(eos_in_thinking="end") an EOS while thinking ends the sample, in both modes."""
    backend = HashSampler(p_eos=0.08)
    budgets = [Budget(t, 5, eos_in_thinking="end") for t in (4, 10, 20)]
    prompts = [[1, 5, k, 7] for k in range(30)]
    sampling = SamplingConfig(seed=0)
    nested = get_method(method).generate(backend, [prompts] * 3, budgets, sampling, nested=True)
    _same(nested, get_method(method).generate(backend, [prompts] * 3, budgets, sampling, nested=False))
    ended = [g for row in nested for g in row if g.think_finish_reason == "eos"]
    assert ended and all(g.solution_tokens == 0 and g.completion_ids[-1] == 2 and g.finish_reason == "eos"
                         for g in ended)


def test_nested_cost_matches_engine_count():
    backend = HashSampler(p_eos=0.0, p_end=0.0)  # never stops early: every budget is used in full
    prompts = [[1, 5, k, 7] for k in range(10)]
    budgets = [Budget(t, 8) for t in (8, 16, 24, 32)]
    sampling = SamplingConfig(seed=0)
    out = get_method("elastic").generate(backend, [prompts] * 4, budgets, sampling, nested=True)
    charged = sum(g.generated_tokens for row in out for g in row)
    assert charged == backend.sampled == 10 * (32 + 8 + 3 * 8)
    backend.sampled = 0
    get_method("elastic").generate(backend, [prompts] * 4, budgets, sampling, nested=False)
    assert backend.sampled == 10 * ((8 + 16 + 24 + 32) + 4 * 8)  # nested: 64 vs 112 per sample, 43% fewer


@pytest.mark.parametrize("method", ["elastic", "s1"])
def test_every_solution_call_is_freshly_seeded(method):
    """A seeded solution call must not replay the thinking call's random stream."""
    backend = HashSampler()
    get_method(method).generate(backend, [[[1, 5, 7]]] * 3, [Budget(4, 3), Budget(8, 3), Budget(12, 3)],
                                SamplingConfig(temperature=0.6, seed=5), nested=True)
    assert backend.seeds[0] == 5 and len(backend.seeds) == 2 and len(set(backend.seeds)) == 2
    backend.seeds.clear()
    get_method(method).generate(backend, [[[1, 5, 7]]] * 3, [Budget(4, 3), Budget(8, 3), Budget(12, 3)],
                                SamplingConfig(temperature=0.6, seed=None), nested=True)
    assert set(backend.seeds) == {None}


def test_nested_solution_is_fresh_not_reused():
    """Each budget's solution continues ITS cut, so it differs from the largest budget's solution."""
    backend = HashSampler(p_eos=0.0, p_end=0.0)
    out = get_method("elastic").generate(backend, [[[1, 5, 7]]] * 2, [Budget(4, 6), Budget(12, 6)],
                                         SamplingConfig(seed=1), nested=True)
    small, big = out[0][0], out[1][0]
    assert small.completion_ids[:4] == big.completion_ids[:4]
    assert small.completion_ids[5:] != big.completion_ids[13:]
    assert small.thinking_tokens == 4 and big.thinking_tokens == 12 and small.solution_tokens == 6


@pytest.mark.parametrize("method", ["elastic", "s1", "qwen3", "truncation"])
def test_greedy_hf_nested_equals_independent(backend, prompts, method):
    budgets = [Budget(6, 5), Budget(12, 5), Budget(18, 5)]
    m = get_method(method)
    greedy = SamplingConfig(temperature=0.0)
    nested = m.generate(backend, [prompts] * 3, budgets, greedy, nested=True)
    indep = m.generate(backend, [prompts] * 3, budgets, greedy, nested=False)
    _same(nested, indep)
