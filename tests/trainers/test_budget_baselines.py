"""Per-budget baselines (``advantage_baseline: budget``) and HBPO-style sub-groups (``budget_subgroups``).

No model: the advantage formula against hand-computed values and against TRL's own group
formula, the row budgets of each layout on every rank, and the config's refusals. The real
2-process run is in ``test_anytime_two_ranks.py``.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from er_env.backends.base import SamplingConfig
from er_env.budget import Budget
from tests.eval.fakes import HashSampler
from trainers.advantages import budget_baseline_advantages
from trainers.budgets import AnytimeCuts, BudgetPrior, PriorError, PriorPerGroup, RolloutLayout, make_strategy
from trainers.config import ConfigError, ERTrainConfig


def _trl_group_advantages(rewards: torch.Tensor, size: int) -> torch.Tensor:
    """TRL 1.16's sum_then_normalize / scale_rewards=group formula, written out."""
    from trl.trainer.utils import nanstd

    grouped = rewards.view(-1, size)
    mean = torch.nanmean(grouped, dim=1).repeat_interleave(size)
    std = nanstd(grouped, dim=1).repeat_interleave(size)
    return torch.nan_to_num((rewards - mean) / (std + 1e-4), nan=0.0)


def test_one_budget_per_group_is_exactly_trls_advantage():
    gen = torch.Generator().manual_seed(0)
    rewards = torch.rand(24, generator=gen)
    rewards[[3, 17]] = torch.nan  # unscored rows: out of the mean and std, advantage 0
    budgets = [16] * 8 + [40] * 8 + [24] * 8  # one budget per group of 8
    got = budget_baseline_advantages(rewards, budgets, 8)
    assert torch.equal(got, _trl_group_advantages(rewards, 8))
    assert got[3] == 0 and got[17] == 0


def test_anytime_layout_gets_a_baseline_per_cut():
    # one group: 2 thinking passes x K = 4 cuts x n = 1; pass 0 answers from cut 3 on, pass 1 from cut 2 on
    rewards = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0])
    cuts = [16, 24, 40, 64] * 2
    std = float(torch.std(rewards))  # TRL's nanstd: the unbiased std of the group
    want = torch.tensor([0.0, -0.5, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0]) / (std + 1e-4)
    assert torch.allclose(budget_baseline_advantages(rewards, cuts, 8), want)
    # the group baseline (TRL's) instead charges the early cuts of the pass that succeeds later
    group = _trl_group_advantages(rewards, 8)
    assert group[0] < 0 and group[4] < 0
    # scale_rewards none / batch
    assert torch.allclose(budget_baseline_advantages(rewards, cuts, 8, "none"), want * (std + 1e-4))
    two = torch.cat([rewards, rewards * 2])
    batch = budget_baseline_advantages(two, cuts * 2, 8, "batch")
    assert torch.allclose(batch[:8], want * (std + 1e-4) / (float(torch.std(two)) + 1e-4))


def test_unscored_rows_leave_their_cell_and_an_all_nan_cell_gives_zero():
    rewards = torch.tensor([1.0, float("nan"), 0.0, 0.0, float("nan"), float("nan"), 1.0, 0.0])
    cuts = [8, 8, 8, 8, 16, 16, 16, 16]
    got = budget_baseline_advantages(rewards, cuts, 8, "none")
    assert got.tolist() == pytest.approx([1 - 1 / 3, 0.0, -1 / 3, -1 / 3, 0.0, 0.0, 0.5, -0.5])


@pytest.mark.parametrize("kwargs,needle", [
    (dict(row_budgets=[8] * 7, group_size=8), "row_budgets has 7 entries for 8 rewards"),
    (dict(row_budgets=[8] * 8, group_size=3), "not whole groups of group_size=3"),
    (dict(row_budgets=[8] * 8, group_size=8, scale_rewards="std"), "scale_rewards must be"),
])
def test_bad_arguments_are_refused(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        budget_baseline_advantages(torch.zeros(8), **kwargs)


# --------------------------------------------------------------------------- row budgets per layout
def test_subgroups_draw_distinct_budgets_per_group_and_ranks_agree():
    prior = BudgetPrior.parse([4, 8, 16, 32, 64])
    s = PriorPerGroup(Budget(think=64, solution=4), prior, subgroups=2)
    # group of 8 = 2 sub-groups of 4; 4 prompts per process, 2 processes: one group spans both ranks
    r0, r1 = RolloutLayout(0, 2, 8, 3, 0), RolloutLayout(1, 2, 8, 3, 0)
    rows = s.row_budgets(r0, 4)
    assert rows == s.row_budgets(r1, 4)  # every process computes the whole batch alike
    lo, hi = s.cuts(r0, 0)
    assert lo < hi and rows == [lo] * 4 + [hi] * 4
    # every pair of distinct budgets turns up over many groups, each budget about equally often
    seen = Counter(b for g in range(400) for b in s.cuts(r0, g))
    assert set(seen) == set(prior.support) and min(seen.values()) > 100


def test_subgroup_rollout_gives_each_subgroup_its_budget():
    backend = HashSampler()
    prior = BudgetPrior.parse([3, 6, 12, 24])
    s = PriorPerGroup(Budget(think=24, solution=5), prior, subgroups=2)
    prompts = [[1, 5, g, 7] for g in range(3) for _ in range(4)]  # 3 groups of 4 = 2 sub-groups of 2
    layout = RolloutLayout(0, 1, 4, 1, 0)
    out = s.generate(backend, prompts, SamplingConfig(seed=0), layout)
    rows = s.row_budgets(layout, len(prompts))
    assert backend.calls == len(set(rows))
    assert s.generated_tokens == sum(c.thinking_tokens + c.solution_tokens for c in out)
    for i, c in enumerate(out):
        assert c.thinking_tokens <= rows[i]
        assert c.completion_ids == backend.generate([prompts[i]], Budget(think=rows[i], solution=5))[0].completion_ids


def test_one_subgroup_keeps_the_old_draws_bit_for_bit():
    prior = BudgetPrior.parse({"log_uniform": [8, 64]})
    old, new = PriorPerGroup(Budget(think=64, solution=4), prior), PriorPerGroup(Budget(think=64, solution=4), prior, 1)
    lay = RolloutLayout(0, 1, 4, 9, 2)
    assert [old.cuts(lay, g) for g in range(50)] == [new.cuts(lay, g) for g in range(50)]
    assert old.row_budgets(lay, 8) == [old.cuts(lay, 0)[0]] * 4 + [old.cuts(lay, 1)[0]] * 4


def test_anytime_row_budgets_follow_the_pass_layout():
    s = AnytimeCuts(Budget(think=64, solution=4), BudgetPrior.parse([8, 16, 32, 64]), k=2, n=2)
    lay = RolloutLayout(0, 1, 8, 0, 0)  # a group of 8 = 2 passes x 2 cuts x 2 solutions
    a, b = s.cuts(lay, 0)
    assert s.row_budgets(lay, 8) == [a, a, b, b, a, a, b, b]


def test_make_strategy_builds_subgroups_and_refuses_too_many():
    base = Budget(think=16, solution=4)
    s = make_strategy(base, BudgetPrior.parse([4, 8, 16]), subgroups=3)
    assert isinstance(s, PriorPerGroup) and s.subgroups == 3
    with pytest.raises(PriorError, match="budget_subgroups=4 sub-groups need 4 distinct budgets"):
        make_strategy(base, BudgetPrior.parse([4, 8, 16]), subgroups=4)


BASE = dict(model="tiny", dataset="embedded:math")


@pytest.mark.parametrize("kwargs,needle", [
    (dict(advantage_baseline="cut"), "advantage_baseline must be one of ['group', 'budget'], got 'cut'"),
    (dict(advantage_baseline="budget"), "every group here has one budget"),
    (dict(advantage_baseline="budget", think_budget_tokens=[8, 16]), "every group here has one budget"),
    (dict(budget_subgroups=2, think_budget_tokens=[8, 16], anytime_cuts=2), "two layouts of a group"),
    (dict(budget_subgroups=3, think_budget_tokens=[8, 16]), "budget_subgroups=3 needs 3 distinct budgets"),
    (dict(budget_subgroups=3, think_budget_tokens=[8, 16, 32], group_size=8), "group_size=8 must split"),
    (dict(budget_subgroups=4, think_budget_tokens=[8, 16, 32, 64], group_size=4), "at least 2 samples each"),
    (dict(budget_subgroups=0), "budget_subgroups must be a positive integer"),
    (dict(advantage_baseline="budget", think_budget_tokens=[8, 16, 32, 64], anytime_cuts=4, group_size=4,
          grpo={"per_device_train_batch_size": 8}), "leaves one completion per cut"),
    (dict(advantage_baseline="budget", budget_subgroups=2, think_budget_tokens=[8, 16],
          grpo={"multi_objective_aggregation": "normalize_then_sum"}), "sum_then_normalize"),
])
def test_config_refuses_bad_baselines_and_subgroups(kwargs, needle):
    with pytest.raises(ConfigError) as err:
        ERTrainConfig(**BASE, **kwargs)
    assert needle in str(err.value)


def test_config_accepts_the_new_layouts():
    ERTrainConfig(**BASE, think_budget_tokens=[8, 16], budget_subgroups=2, advantage_baseline="budget")
    ERTrainConfig(**BASE, think_budget_tokens=[8, 16, 32, 64], anytime_cuts=4, advantage_baseline="budget")
    default = ERTrainConfig(**BASE)
    assert default.advantage_baseline == "group" and default.budget_subgroups == 1


@pytest.mark.parametrize("kwargs,group", [
    (dict(think_budget_tokens=[64, 128, 256, 512], anytime_cuts=4, group_size=8, advantage_baseline="budget"), 8),
    (dict(think_budget_tokens=[64, 128, 256], budget_subgroups=3, group_size=12, advantage_baseline="budget"), 6),
])
def test_rehearsal_keeps_two_completions_per_budget(kwargs, group):
    from trainers.launch import rehearsal_config

    cfg = ERTrainConfig(**BASE, **kwargs, grpo={"per_device_train_batch_size": 24})
    small = rehearsal_config(cfg, model="tiny")  # valid (ERTrainConfig re-checks it), two completions per budget
    assert small.group_size == group and small.advantage_baseline == "budget"


def test_every_arm_of_the_comparison_is_a_valid_recipe(tmp_path):
    """benchmarks/budget_objectives.py's arms: each one's recipe passes the config checks, with the steps it is given."""
    import yaml

    from benchmarks import budget_objectives as bo

    args = bo.parse_args(["--arms", ",".join(bo.ARMS)])
    assert set(bo.DEFAULT_ARMS) <= set(args.arm_list) == set(bo.ARMS)
    for arm in bo.ARMS:
        recipe = yaml.safe_load(bo.arm_recipe(bo.ec.RECIPE, arm, tmp_path, 7).read_text())
        assert recipe["grpo"]["max_steps"] == 7 and all(recipe[k] == v for k, v in bo.ARMS[arm].items())
    with pytest.raises(SystemExit):
        bo.parse_args(["--arms", "er-fixed,no-such-arm"])
