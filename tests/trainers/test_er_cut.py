"""Answering when the thinking was cut, short and fixed-seed: ER-GRPO raises the reward of cut rollouts.

The miniature of ``benchmarks/er_cut.py`` (issue 22), sized for the test suite:

- Task: 24 sums of 2-3 numbers from 1..3 (:mod:`er_tools.synthetic_arith`), graded by the
  in-process math checker.
- Start model: the tiny model fine-tuned on complete "answer, then verify" traces
  (:func:`er_tools.synthetic_verify.build_start_model`): a first pass that reaches the sum
  (8-17 thinking tokens here), then 1-3 verification rounds; never a forced ``</think>``.
- ER-GRPO: the shipped ``er_cut_cpu`` recipe with t* = T_STAR (after the first pass, before the
  end of every verified trace, so nearly every rollout is cut), through
  :func:`trainers.launch.train`, i.e. what ``er train`` runs.

The criterion is the paper's first claim: ``er/math_reward_cut_mean`` (the reward of rollouts
whose thinking was cut) of the last steps must exceed that of the first steps by MARGIN. It
fails on a trainer that does not learn: the same run with learning rate 0 must miss it (the
second test), so the first cannot pass by sampling noise alone.
"""

from __future__ import annotations

import math
import statistics

import pytest

T_STAR = 20
SOLUTION = 16
STEPS = 10
WINDOW = 3
MARGIN = 0.15
LEARNING_RATE = 1e-3


@pytest.fixture(scope="module")
def verify_task(tmp_path_factory):
    """(training problems' JSONL file, the fine-tuned start model's directory)."""
    from er_tools.synthetic_arith import ArithTaskConfig, make_problems, write_problems_jsonl
    from er_tools.synthetic_verify import build_start_model

    root = tmp_path_factory.mktemp("er-cut")
    problems = make_problems(24, seed=0, config=ArithTaskConfig(min_terms=2, max_terms=3, max_operand=3))
    data = write_problems_jsonl(problems, root / "train.jsonl")
    start = build_start_model(root / "start-model", problems * 8, seed=0, hidden_size=64, intermediate_size=128,
                              train_steps=500)
    return data, start


def _cut_reward(verify_task, out, learning_rate: float) -> list[float]:
    from trainers.config import load_recipe
    from trainers.launch import train

    data, start = verify_task
    cfg = load_recipe("er_cut_cpu", overrides={
        "model": str(start), "dataset": str(data), "output_dir": str(out), "think_budget_tokens": T_STAR,
        "solution_budget_tokens": SOLUTION, "seed": 0,
        "grpo": {"max_steps": STEPS, "learning_rate": learning_rate, "per_device_train_batch_size": 32, "seed": 0,
                 "save_strategy": "no"}})
    logs = [h for h in train(cfg).state.log_history if "reward" in h]
    assert len(logs) == STEPS and all(h["er/math_reward_errors"] == 0 for h in logs)
    assert statistics.fmean(h["er/math_cut_share"] for h in logs[:WINDOW]) >= 0.8  # the budget binds
    return [h.get("er/math_reward_cut_mean", math.nan) for h in logs]


def _gain(values: list[float]) -> float:
    """Mean of the last WINDOW steps that logged cut rollouts minus that of the first WINDOW."""
    logged = [v for v in values if not math.isnan(v)]
    assert len(logged) >= 2 * WINDOW, f"too few steps with cut rollouts: {values}"
    return statistics.fmean(logged[-WINDOW:]) - statistics.fmean(logged[:WINDOW])


@pytest.mark.slow
def test_er_grpo_teaches_the_model_to_answer_when_cut(verify_task, tmp_path):
    reward_cut = _cut_reward(verify_task, tmp_path / "er", LEARNING_RATE)
    assert _gain(reward_cut) >= MARGIN, f"cut rollouts gained no reward: {[round(r, 3) for r in reward_cut]}"


@pytest.mark.slow
def test_with_learning_rate_zero_cut_rollouts_gain_nothing(verify_task, tmp_path):
    reward_cut = _cut_reward(verify_task, tmp_path / "lr0", 0.0)
    assert _gain(reward_cut) < MARGIN, f"reward of cut rollouts rose without learning: {reward_cut}"
