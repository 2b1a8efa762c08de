"""The Elastic Reasoning effect, short and fixed-seed: budget-constrained GRPO raises the mean reward.

The miniature of ``benchmarks/er_effect.py`` (issue 9, section 5), sized for the test suite
(about 45 s on 2 CPU cores):

- Task: the 24 training sums of 2-3 numbers from 1..3 (:mod:`er_tools.synthetic_arith`),
  graded by the in-process math checker.
- Start model: the tiny model fine-tuned for 600 steps on those sums, 70% long traces (34
  or 70 thinking tokens) and 30% short ones (8 or 17). Unconstrained it is right in either
  style almost always; at t* = 20 every long trace is cut before its answer.
- ER-GRPO: the shipped ``er_effect_cpu`` recipe (budgets, batch and steps shrunk; learning
  rate 1e-4), through :func:`trainers.launch.train`, i.e. what ``er train`` runs.

The test asserts what the paper's mechanism predicts and would fail on a trainer that
ignores the rewards, the budget, or the forced-token mask: the mean reward of the last
steps is well above that of the first steps, the share of rollouts cut at t* falls, no
grader error happens, and the trained model is more accurate than its start under the
tight budget. The seeds are fixed; the margins were chosen from four training seeds
(reward gain of the last 4 steps over the first 4: +0.34 to +0.47).
"""

from __future__ import annotations

import statistics

import pytest

from er_env.backends.base import SamplingConfig
from er_env.budget import Budget

T_STAR = 20
SOLUTION = 16
STEPS = 12
WINDOW = 4


@pytest.fixture(scope="module")
def sums_task(quick_sums_model):
    """(training problems, their JSONL file, the fine-tuned start model's directory).

    The start model is ``er tiny-model --task sums``'s (:func:`er_tools.synthetic_arith.build_quick_task`:
    these 24 sums, 8 documents each, 70% long traces, hidden size 64, 600 steps), shared with the
    first-training test.
    """
    from er_tools.synthetic_arith import QUICK_TASK, make_problems

    problems = make_problems(24, seed=0, config=QUICK_TASK)
    return problems, quick_sums_model / "train.jsonl", quick_sums_model


def _accuracy(model_dir, problems, think: int) -> float:
    from transformers import AutoTokenizer

    from er_env.backends.hf import HFBackend
    from er_env.rewards import MathReward
    from er_env.rollout import rollout

    backend = HFBackend(str(model_dir), AutoTokenizer.from_pretrained(str(model_dir)), device="cpu",
                        batch_size=len(problems) * 4)
    records = rollout(backend, problems, Budget(think=think, solution=SOLUTION),
                      SamplingConfig(temperature=0.7, seed=1), MathReward(), group_size=4)
    assert not any(r.is_error for r in records)
    return statistics.fmean(r.reward for r in records)


@pytest.mark.slow
def test_er_grpo_at_a_tight_budget_raises_the_mean_reward(sums_task, tmp_path):
    from trainers.config import load_recipe
    from trainers.launch import train

    problems, data, start = sums_task
    cfg = load_recipe("er_effect_cpu", overrides={
        "model": str(start), "dataset": str(data), "output_dir": str(tmp_path / "er-grpo"),
        "think_budget_tokens": T_STAR, "solution_budget_tokens": SOLUTION, "seed": 0,
        "grpo": {"max_steps": STEPS, "learning_rate": 1e-4, "per_device_train_batch_size": 32, "seed": 0,
                 "save_strategy": "no"}})
    assert cfg.group_size == 8 and cfg.temperature == 0.7 and cfg.backend == "hf"
    trainer = train(cfg)

    logs = [h for h in trainer.state.log_history if "reward" in h]
    assert len(logs) == STEPS
    reward = [h["reward"] for h in logs]
    cut = [h["er/math_cut_share"] for h in logs]
    first, last = statistics.fmean(reward[:WINDOW]), statistics.fmean(reward[-WINDOW:])
    assert last >= first + 0.15, f"mean reward did not rise: {[round(r, 3) for r in reward]}"
    assert statistics.fmean(cut[-WINDOW:]) <= statistics.fmean(cut[:WINDOW]) - 0.2, f"cut share: {cut}"
    assert all(h["er/math_reward_errors"] == 0 for h in logs)

    trained = tmp_path / "trained"
    trainer.save_model(str(trained))
    trainer.processing_class.save_pretrained(str(trained))
    before, after = _accuracy(start, problems, T_STAR), _accuracy(trained, problems, T_STAR)
    assert after >= before + 0.15, f"accuracy at t={T_STAR}: start {before:.3f}, ER-trained {after:.3f}"
