"""Budget priors for ``er train``: parsing, draws per GRPO group, rank agreement, config errors (no model)."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import pytest

from er_env.backends.base import SamplingConfig
from er_env.budget import Budget
from tests.eval.fakes import HashSampler
from trainers.budgets import (
    AnytimeCuts,
    BudgetPrior,
    FixedBudget,
    PriorError,
    PriorPerGroup,
    RolloutLayout,
    make_strategy,
)
from trainers.config import ConfigError, ERTrainConfig

#: chi-square critical values at p = 0.001 by degrees of freedom (a correct sampler fails 1 run in 1000)
CHI2_999 = {2: 13.816, 7: 24.322}


def _chi2(counts: Counter, prior: BudgetPrior, n: int) -> float:
    return sum((counts[b] - n * w) ** 2 / (n * w) for b, w in zip(prior.support, prior.weights, strict=True))


def _layout(rank=0, procs=1, gens=4, seed=0, call=0) -> RolloutLayout:
    return RolloutLayout(rank, procs, gens, seed, call)


@pytest.mark.parametrize("value,support,weights", [
    (64, (64,), (1.0,)),
    ([32, 8, 16], (8, 16, 32), (1 / 3,) * 3),
    ({"budgets": [8, 32], "weights": [3, 1]}, (8, 32), (0.75, 0.25)),
    ({"budgets": [8, 32, 64], "weights": [1, 0, 1]}, (8, 64), (0.5, 0.5)),
    ({"uniform": [4, 7]}, (4, 5, 6, 7), (0.25,) * 4),
])
def test_prior_forms(value, support, weights):
    prior = BudgetPrior.parse(value)
    assert prior.support == support and prior.weights == pytest.approx(weights)


def test_log_uniform_masses_follow_log_spacing():
    prior = BudgetPrior.parse({"log_uniform": [2, 9]})
    # mass of [b, b+1) under a log-uniform law on [2, 10): log((b+1)/b) / log(5)
    import math

    assert prior.weights == pytest.approx([math.log((b + 1) / b) / math.log(5) for b in range(2, 10)])
    assert prior.max == 9 and not prior.fixed


@pytest.mark.parametrize("value,needle", [
    (0, "positive integer"),
    ([8, -1], "positive integer (tokens), got -1"),
    ({"budgets": [8, 16], "weights": [0, 0]}, "sum to a positive number"),
    ({"budgets": [8, 16], "weights": [1]}, "one weight per budget"),
    ({"budgets": [8, 16], "weights": [1, -2]}, ">= 0, got -2"),
    ({"uniform": [16, 8]}, "lo=16 > hi=8"),
    ({"normal": [16, 8]}, "exactly one of"),
    ("1024", "positive integer or a prior"),
])
def test_bad_priors_name_the_field(value, needle):
    with pytest.raises(PriorError, match="think_budget_tokens") as err:
        BudgetPrior.parse(value)
    assert needle in str(err.value)


@pytest.mark.parametrize("value,df", [({"budgets": [8, 16, 32], "weights": [1, 2, 5]}, 2),
                                      ({"log_uniform": [2, 9]}, 7)])
def test_draws_follow_the_prior_chi_square(value, df):
    prior = BudgetPrior.parse(value)
    strategy = PriorPerGroup(Budget(think=prior.max, solution=4), prior)
    n = 4000
    counts = Counter(strategy.cuts(_layout(seed=7, call=3), g)[0] for g in range(n))
    assert set(counts) <= set(prior.support)
    assert _chi2(counts, prior, n) < CHI2_999[df]


def test_one_budget_per_group_the_same_on_every_rank_and_seeded():
    prior = BudgetPrior.parse([4, 8, 12, 16, 20])
    s = PriorPerGroup(Budget(think=20, solution=4), prior)
    # num_generations 4, 2 prompts per process: groups span both ranks
    r0, r1 = _layout(0, 2, 4, seed=5), _layout(1, 2, 4, seed=5)
    assert r0.groups(2) == [0, 0] and r1.groups(2) == [0, 0]
    assert s.cuts(r0, 0) == s.cuts(r1, 0)
    assert s.batch_budgets(r0, 2) == s.batch_budgets(r1, 2)
    many = [s.cuts(_layout(seed=5, call=c), 0)[0] for c in range(40)]
    assert len(set(many)) > 1  # a fresh draw every call
    assert many == [s.cuts(_layout(seed=5, call=c), 0)[0] for c in range(40)]  # reproducible
    assert many != [s.cuts(_layout(seed=6, call=c), 0)[0] for c in range(40)]


def test_prior_rollout_shares_a_budget_within_each_group():
    backend = HashSampler()
    prior = BudgetPrior.parse([3, 6, 12, 24])
    s = PriorPerGroup(Budget(think=24, solution=5), prior)
    prompts = [[1, 5, g, 7] for g in range(6) for _ in range(4)]  # 6 groups of 4
    layout = _layout(seed=1)
    out = s.generate(backend, prompts, SamplingConfig(seed=0), layout)
    drawn = [s.cuts(layout, g)[0] for g in range(6)]
    assert backend.calls == len(set(drawn))  # one engine call per distinct budget
    for i, c in enumerate(out):
        t = drawn[i // 4]
        assert list(c.prompt_ids) == prompts[i] and c.thinking_tokens <= t
        indep = backend.generate([prompts[i]], Budget(think=t, solution=5))[0]
        assert c.completion_ids == indep.completion_ids


def test_fixed_budget_is_the_old_single_call():
    calls = []

    class Recorder(HashSampler):
        def generate(self, prompts, budget, sampling=None):
            calls.append((prompts, budget, sampling))
            return super().generate(prompts, budget, sampling)

    base, sampling = Budget(think=8, solution=4), SamplingConfig(seed=3)
    prompts = [[1, 5, k, 7] for k in range(8)]
    strategy = make_strategy(base, BudgetPrior.parse(8))
    assert isinstance(strategy, FixedBudget)
    out = strategy.generate(Recorder(), prompts, sampling, _layout())
    assert calls == [(prompts, base, sampling)]  # the very objects, one call
    assert out == HashSampler().generate(prompts, base, sampling)


def test_make_strategy_picks_the_layout():
    base = Budget(think=16, solution=4)
    assert isinstance(make_strategy(base, BudgetPrior.parse([4, 16])), PriorPerGroup)
    any_ = make_strategy(base, BudgetPrior.parse([4, 8, 16]), anytime_cuts=2, anytime_solutions=3)
    assert isinstance(any_, AnytimeCuts) and (any_.k, any_.n) == (2, 3)
    with pytest.raises(PriorError, match="anytime_cuts=4"):
        make_strategy(base, BudgetPrior.parse([4, 8, 16]), anytime_cuts=4)


def test_anytime_cuts_are_distinct_sorted_draws():
    s = AnytimeCuts(Budget(think=64, solution=4), BudgetPrior.parse({"uniform": [1, 64]}), k=4)
    for g in range(50):
        cuts = s.cuts(_layout(seed=2), g)
        assert len(cuts) == 4 and cuts == sorted(set(cuts))


BASE = dict(model="tiny", dataset="embedded:math")


@pytest.mark.parametrize("kwargs,needle", [
    (dict(think_budget_tokens={"budgets": [8, 0]}), "think_budget_tokens.budgets: every budget must be a positive"),
    (dict(think_budget_tokens={"budgets": [8, 16], "weights": [0, 0]}), "sum to a positive number"),
    (dict(think_budget_tokens=[8, 16], anytime_cuts=3), "anytime_cuts=3 needs 3 distinct budgets"),
    (dict(think_budget_tokens=[8, 16], anytime_cuts=2, anytime_solutions=2, group_size=6),
     "group_size=6 must be thinking passes x anytime_cuts (2) x anytime_solutions (2)"),
    (dict(think_budget_tokens=[8, 16], anytime_cuts=2, anytime_solutions=3, group_size=6, num_processes=3,
          grpo={"per_device_train_batch_size": 4}), "would split a thinking pass"),
    (dict(anytime_solutions=2), "set anytime_cuts >= 1"),
    (dict(anytime_cuts=-1), "anytime_cuts must be an integer >= 0"),
    (dict(solution_budget_tokens=[8, 16]), "priors apply to think_budget_tokens only"),
])
def test_config_refuses_bad_combinations_before_loading(kwargs, needle):
    with pytest.raises(ConfigError) as err:
        ERTrainConfig(**BASE, **kwargs)
    assert needle in str(err.value)


def test_config_accepts_a_prior_and_sizes_completions_by_its_largest_budget():
    cfg = ERTrainConfig(**BASE, think_budget_tokens={"log_uniform": [8, 64]}, solution_budget_tokens=16,
                        anytime_cuts=4, anytime_solutions=2, group_size=16,
                        grpo={"per_device_train_batch_size": 16})
    assert cfg.think_budget_max == 64 and cfg.max_completion_tokens == 64 + 16 + 8
    assert ERTrainConfig(**BASE).think_prior.fixed


def test_plan_and_rehearsal_show_the_prior():
    from trainers.launch import rehearsal_config

    cfg = ERTrainConfig(**BASE, think_budget_tokens=[64, 128, 256], anytime_cuts=3, anytime_solutions=2,
                        group_size=12, grpo={"per_device_train_batch_size": 12})
    small = rehearsal_config(cfg, model="tiny")
    assert small.think_budget_max <= 16 and len(small.think_prior.support) >= 3
    assert small.group_size == 6 and small.grpo["per_device_train_batch_size"] % 6 == 0
    layout = SimpleNamespace(accelerator=SimpleNamespace(process_index=1, num_processes=2),
                             args=SimpleNamespace(num_generations=12, seed=9))
    lay = RolloutLayout.from_trainer(layout, None, 4)
    assert (lay.process_index, lay.num_processes, lay.num_generations, lay.seed, lay.call) == (1, 2, 12, 9, 4)
