"""Anytime rollouts with per-cut baselines in a real 2-process ``er train`` (gloo, CPU, tiny model).

One GRPO step of the tiny recipe with a prior, ``anytime_cuts: 2``, ``anytime_solutions: 2``
(a group of 4 = one thinking pass) and ``advantage_baseline: budget``, both ranks recording
(``record_ranks``). The checks read the records: each rank holds whole thinking passes,
the cuts are the group's draws (the same function of the seed on both ranks), every
completion of a pass shares its thinking, and the advantages each rank trained on are the
per-cut formula over both ranks' rewards.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from er_env.budget import Budget
from tests.quiet_output import assert_quiet
from tests.trainers.test_trainer_distributed import _env, _free_port, _records
from trainers.advantages import budget_baseline_advantages
from trainers.budgets import AnytimeCuts, BudgetPrior, RolloutLayout

PRIOR = "4,8,12,16"


@pytest.mark.multiprocess
@pytest.mark.slow
def test_two_ranks_keep_whole_passes_and_train_on_per_cut_advantages(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "er_cli", "train", "--config", "tiny_cpu", "--model", str(tiny_model_dir),
           "--output-dir", str(out), "--num-processes", "2", "--record-ranks", "true",
           "--extra-rewards", "dist_reward:solution_length", "--think-budget-tokens", PRIOR,
           "--anytime-cuts", "2", "--anytime-solutions", "2", "--advantage-baseline", "budget",
           "--main-process-port", str(_free_port()),
           "--grpo", "{max_steps: 1, disable_tqdm: true, save_strategy: steps, save_steps: 1}"]
    proc = subprocess.run(cmd, env=_env(tmp_path), capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert_quiet(proc.stdout + proc.stderr, "er train with 2 processes and a checkpoint")  # no saving bars either
    assert (out / "checkpoint-1").is_dir()
    ranks = _records(out)
    assert sorted(ranks) == [0, 1]
    strategy = AnytimeCuts(Budget(think=16, solution=16), BudgetPrior.parse([4, 8, 12, 16]), k=2, n=2)
    rewards, advantages, budgets = [], [], []
    for rank in (0, 1):
        (roll,) = [r for r in ranks[rank] if r["event"] == "rollout"]
        prompts, ids, think = roll["prompts"], roll["completion_ids"], roll["thinking_tokens"]
        assert len(prompts) == 8  # 2 whole groups (= thinking passes) per rank
        for g in range(2):
            rows = range(4 * g, 4 * g + 4)
            assert len({prompts[i] for i in rows}) == 1
            # the group's cuts: drawn from (seed 0, call 0, global group) alike on both ranks
            lo, hi = strategy.cuts(RolloutLayout(rank, 2, 4, 0, 0), 2 * rank + g)
            assert [roll["er_think_budget"][i] for i in rows] == [lo, lo, hi, hi]
            assert all(think[i] <= roll["er_think_budget"][i] for i in rows)
            longest = ids[4 * g + 2][: think[4 * g + 2]]
            for i in rows:  # one thinking pass: every cut's thinking is a prefix of the longest
                assert ids[i][: think[i]] == longest[: think[i]]
        assert not set(prompts) & set(r for r in ([x for x in ranks[1 - rank] if x["event"] == "rollout"][0]
                                                  ["prompts"]))
        per_func = [r["rewards"] for r in ranks[rank] if r["event"] == "reward"]
        assert len(per_func) == 2  # the math grader and the dense extra reward
        rewards += [sum(v) for v in zip(*per_func, strict=True)]
        budgets += roll["er_think_budget"]
        (adv,) = [r for r in ranks[rank] if r["event"] == "advantages"]
        advantages += adv["advantages"]
    want = budget_baseline_advantages(torch.tensor(rewards), budgets, 4)
    assert advantages == pytest.approx(want.tolist(), abs=1e-5)
    # and they differ from TRL's group baseline whenever the two cuts of a pass scored differently
    assert any(abs(a) > 1e-6 for a in advantages)
