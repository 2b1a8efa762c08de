"""Anytime (multi-cut) rollouts on the real tiny model (HF backend, CPU).

One thinking pass per sample whatever K; every completion equals, token for token, an
independent budget-constrained greedy rollout with the same cut; forced ``</think>``
masked; a process's slice keeps whole thinking passes; prior budgets logged.
"""

from __future__ import annotations

import math

import pytest

from er_env.backends.base import SamplingConfig
from er_env.budget import Budget
from trainers.budgets import AnytimeCuts, BudgetPrior, RolloutLayout

GREEDY = SamplingConfig(temperature=0.0, logprobs=True)
PRIOR = BudgetPrior.parse([2, 5, 9, 14])
SOLUTION = 6


class Counting:
    """Wraps a backend; records each call's prompts, budget and decoded tokens."""

    def __init__(self, inner):
        self.inner, self.special, self.context_length = inner, inner.special, inner.context_length
        self.calls: list[tuple[list[list[int]], Budget, int]] = []

    def generate(self, prompts, budget, sampling=None):
        out = self.inner.generate(prompts, budget, sampling)
        self.calls.append(([list(p) for p in prompts], budget, sum(c.thinking_tokens + c.solution_tokens for c in out)))
        return out


@pytest.mark.parametrize("k,n", [(1, 2), (4, 1), (4, 2)])
def test_one_thinking_pass_per_sample_and_each_cut_equals_an_independent_rollout(backend, prompts, k, n):
    counting = Counting(backend)
    strategy = AnytimeCuts(Budget(think=PRIOR.max, solution=SOLUTION), PRIOR, k, n)
    layout = RolloutLayout(0, 1, k * n, seed=3, call=0)  # one pass per group
    passes = prompts[:3]
    batch = [p for p in passes for _ in range(k * n)]
    out = strategy.generate(counting, batch, GREEDY, layout)
    assert len(out) == len(batch)
    thinking_calls = [c for c in counting.calls if c[1].constrained]
    # one thinking call per distinct largest cut; every sample's prompt appears in exactly one of them
    assert sorted(map(tuple, (p for c in thinking_calls for p in c[0]))) == sorted(map(tuple, passes))
    assert all(not c[1].constrained for c in counting.calls[len(thinking_calls):])  # the rest: solutions only
    end = backend.special.think_end
    for s, prompt in enumerate(passes):
        cuts = strategy.cuts(layout, s)
        assert len(cuts) == k
        for b, t in enumerate(cuts):
            indep = backend.generate([prompt], Budget(think=t, solution=SOLUTION), GREEDY)[0]
            for m in range(n):
                c = out[s * k * n + b * n + m]
                assert list(c.prompt_ids) == prompt
                assert c.completion_ids == indep.completion_ids and c.forced_mask == indep.forced_mask
                assert c.env_mask == indep.env_mask and c.thinking_tokens <= t
                for i, forced in enumerate(c.forced_mask):  # forced </think>: masked, no sampling logprob
                    assert c.env_mask[i] == (0 if forced else 1)
                if c.thinking_truncated:
                    assert sum(c.forced_mask) >= 1 and tuple(c.completion_ids[c.thinking_tokens:][:len(end)]) == end
                assert len(c.logprobs) == len(c.completion_ids)
                sampled = [lp for lp, f in zip(c.logprobs, c.forced_mask, strict=True) if not f]
                assert all(math.isfinite(x) for x in sampled)
    assert any(c.thinking_truncated for c in out)


def test_anytime_generates_at_most_half_the_tokens_of_independent_rollouts_at_k4(backend, prompts):
    counting = Counting(backend)
    prior = BudgetPrior.parse([8, 16, 24, 32])
    strategy = AnytimeCuts(Budget(think=32, solution=4), prior, 4, 1)
    layout = RolloutLayout(0, 1, 4, seed=0, call=0)
    batch = [p for p in prompts for _ in range(4)]
    strategy.generate(counting, batch, GREEDY, layout)
    shared = sum(c[2] for c in counting.calls)
    indep = Counting(backend)
    for s, prompt in enumerate(prompts):
        for t in strategy.cuts(layout, s):
            indep.generate([prompt], Budget(think=t, solution=4), GREEDY)
    separate = sum(c[2] for c in indep.calls)
    assert shared <= separate / 2, (shared, separate)


class _Acc:
    """An accelerator seen as rank ``r`` of ``n`` (everything else from the real one)."""

    def __init__(self, real, rank, n):
        self._real, self.process_index, self.num_processes = real, rank, n

    def __getattr__(self, name):
        return getattr(self._real, name)


class _AsRank:
    def __init__(self, trainer, rank, n):
        self._trainer, self.accelerator = trainer, _Acc(trainer.accelerator, rank, n)
        self.metrics: dict[str, list[float]] = {}

    def _log_metric(self, name, value):
        self.metrics.setdefault(name, []).append(value)

    def __getattr__(self, name):
        return getattr(self._trainer, name)


def test_trl_rollout_keeps_whole_passes_per_rank_and_logs_the_budgets(tiny_trainer, math_problems):
    """Two ranks of one generation batch: num_generations 4 = 1 pass x K 2 x n 2 per group, 8 prompts per rank."""
    from trainers.rollout import make_rollout_func

    strategy = AnytimeCuts(Budget(think=12, solution=6), BudgetPrior.parse([3, 6, 12]), 2, 2)
    fn = make_rollout_func(math_problems, Budget(think=12, solution=6), SamplingConfig(temperature=1.0, seed=0),
                           strategy=strategy)
    ids = [p.id for p in math_problems]
    batch = [i for i in ids for _ in range(4)]  # 4 groups of 4, 2 per rank
    outs, metrics = [], []
    for rank in (0, 1):
        view = _AsRank(tiny_trainer, rank, 2)
        fn.calls = 0  # both ranks at the same rollout call
        outs.append(fn(batch[rank * 8:(rank + 1) * 8], view))
        metrics.append(view.metrics)
    assert set(metrics[0]) == set(metrics[1]) == {f"er/think_budget/{x}" for x in ("mean", "min", "max")} | {
        "er/generated_tokens"}
    assert all(metrics[0][f"er/think_budget/{x}"] == metrics[1][f"er/think_budget/{x}"] for x in ("mean", "min", "max"))
    for rank, out in enumerate(outs):  # tokens sampled on this rank: each pass's thinking once, then its solutions
        passes = [(g * 4, g * 4 + 4) for g in range(2)]
        shared = sum(max(out["thinking_tokens"][a:b]) for a, b in passes)
        assert metrics[rank]["er/generated_tokens"] == [shared + sum(out["solution_tokens"])]
        assert out["er_think_budget"] == [t for g in range(2) for t in strategy.cuts(
            RolloutLayout(rank, 2, 4, 0, 0), rank * 2 + g) for _ in range(2)]
    drawn = [t for g in range(4) for t in strategy.cuts(RolloutLayout(0, 2, 4, 0, 0), g)]
    assert metrics[0]["er/think_budget/mean"] == [sum(drawn) / len(drawn)]
    for rank, out in enumerate(outs):
        assert len(out["completion_ids"]) == 8 and out["er_problem_id"] == batch[rank * 8:(rank + 1) * 8]
        for g in range(2):  # each group: one pass, cut at 2 budgets, 2 solutions each
            cuts = strategy.cuts(RolloutLayout(rank, 2, 4, 0, 0), rank * 2 + g)
            rows = range(g * 4, g * 4 + 4)
            think = [out["completion_ids"][i][: out["thinking_tokens"][i]] for i in rows]
            short, long_ = think[:2], think[2:]
            assert all(len(x) <= cuts[0] for x in short) and all(len(x) <= cuts[1] for x in long_)
            assert all(long_[0][: len(x)] == x for x in short + long_)  # one shared thinking pass
            for i in rows:
                mask, comp = out["env_mask"][i], out["completion_ids"][i]
                lps = out["logprobs"][i]
                assert len(mask) == len(comp) == len(lps)
                assert all(math.isnan(lp) == (m == 0) for lp, m in zip(lps, mask, strict=True))


def test_prior_rollout_through_trl_logs_and_respects_budgets(tiny_trainer, math_problems):
    from trainers.budgets import PriorPerGroup
    from trainers.rollout import make_rollout_func

    strategy = PriorPerGroup(Budget(think=16, solution=6), BudgetPrior.parse([2, 4, 8, 16]))
    fn = make_rollout_func(math_problems, Budget(think=16, solution=6), SamplingConfig(temperature=1.0, seed=0),
                           strategy=strategy)
    view = _AsRank(tiny_trainer, 0, 1)
    batch = [p.id for p in math_problems for _ in range(4)]
    out = fn(batch, view)
    drawn = [strategy.cuts(RolloutLayout(0, 1, 4, 0, 0), g)[0] for g in range(4)]
    assert view.metrics["er/think_budget/min"] == [min(drawn)] and view.metrics["er/think_budget/max"] == [max(drawn)]
    assert all(out["thinking_tokens"][i] <= drawn[i // 4] for i in range(16))


def test_fixed_budget_rollout_is_the_default_and_logs_nothing(tiny_trainer, math_problems):
    from trainers.budgets import FixedBudget
    from trainers.rollout import make_rollout_func

    budget = Budget(think=16, solution=16)
    fn = make_rollout_func(math_problems, budget, SamplingConfig(temperature=1.0, seed=0))
    assert fn.strategy == FixedBudget(budget)
    view = _AsRank(tiny_trainer, 0, 1)
    out = fn([p.id for p in math_problems], view)
    assert view.metrics == {"er/generated_tokens": [sum(out["thinking_tokens"]) + sum(out["solution_tokens"])]}
    assert out["er_think_budget"] == [16] * len(math_problems)
