"""Answering when the thinking was cut, short and fixed-seed: ER-GRPO raises the reward of cut rollouts.

The miniature of ``benchmarks/er_cut.py`` (issue 22), sized for the test suite:

- Task: 24 sums of 2-3 numbers from 1..3 (:mod:`er_tools.synthetic_arith`), graded by the
  in-process math checker.
- Start model: the tiny model fine-tuned on complete "answer, then verify" traces
  (:func:`er_tools.synthetic_verify.build_start_model`): a first pass that reaches the sum
  (8-17 thinking tokens here), then one verification round; never a forced ``</think>``.
- ER-GRPO: the shipped ``er_cut_cpu`` recipe with t* = T_STAR (after the first pass, before the
  end of every verified trace, so nearly every rollout is cut), through
  :func:`trainers.launch.train`, i.e. what ``er train`` runs.

The criterion is the paper's first claim, measured on the model rather than on the noisy
per-step training log: accuracy *when the thinking was cut* at t* (the share of correct answers
among the samples whose ``</think>`` was forced), over all training problems x SAMPLES samples with
a fixed sampling seed, must rise by MARGIN (0.10) from the start model to the trained one. The training
log must also show the reward of cut rollouts (``er/math_reward_cut_mean``) higher in the second
half than in the first WINDOW steps. With learning rate 0 (the second test, the control) the
weights cannot move however many steps run, so CONTROL_STEPS of them show it: the same measurement
gives exactly the start model's accuracy and the first test's criterion fails.
"""

from __future__ import annotations

import math
import statistics

import pytest

T_STAR = 20
SOLUTION = 16
STEPS = 20
CONTROL_STEPS = 2  # learning rate 0: the weights are the start model's after any number of steps
WINDOW = 4
MARGIN = 0.10  # measured (seed 0): 0.006 -> 0.156 on 192 cut samples; learning rate 0: exactly 0.006 -> 0.006
LEARNING_RATE = 1e-3
SAMPLES = 8


@pytest.fixture(scope="module")
def verify_task(tmp_path_factory):
    """(training problems' JSONL file, the fine-tuned start model's directory)."""
    from er_tools.synthetic_arith import ArithTaskConfig, make_problems, write_problems_jsonl
    from er_tools.synthetic_verify import VerifyTaskConfig, build_start_model

    root = tmp_path_factory.mktemp("er-cut")
    problems = make_problems(24, seed=0, config=ArithTaskConfig(min_terms=2, max_terms=3, max_operand=3))
    data = write_problems_jsonl(problems, root / "train.jsonl")
    start = build_start_model(root / "start-model", problems * 8, config=VerifyTaskConfig(max_checks=1), seed=0,
                              hidden_size=64, intermediate_size=128, train_steps=400)
    return data, start, problems


def _accuracy_when_cut(model_dir, problems) -> tuple[float, int]:
    """(share correct among samples whose thinking was cut at T_STAR, their number)."""
    from transformers import AutoTokenizer

    from er_env.backends.base import SamplingConfig
    from er_env.backends.hf import HFBackend
    from er_env.budget import Budget
    from er_env.rewards import MathReward
    from er_env.rollout import rollout

    backend = HFBackend(str(model_dir), AutoTokenizer.from_pretrained(str(model_dir)), device="cpu",
                        batch_size=len(problems) * SAMPLES)
    records = rollout(backend, problems, Budget(think=T_STAR, solution=SOLUTION),
                      SamplingConfig(temperature=0.7, seed=1), MathReward(), group_size=SAMPLES)
    assert not any(r.is_error for r in records)
    cut = [r.reward for r in records if r.completion.thinking_truncated]
    assert len(cut) >= len(records) // 2, f"the budget should cut most samples, cut {len(cut)} of {len(records)}"
    return statistics.fmean(cut), len(cut)


def _train(verify_task, out, learning_rate: float, steps: int):
    """(the trained model's directory, er/math_reward_cut_mean per step)."""
    from trainers.config import load_recipe
    from trainers.launch import train

    data, start, _ = verify_task
    cfg = load_recipe("er_cut_cpu", overrides={
        "model": str(start), "dataset": str(data), "output_dir": str(out), "think_budget_tokens": T_STAR,
        "solution_budget_tokens": SOLUTION, "seed": 0,
        "grpo": {"max_steps": steps, "learning_rate": learning_rate, "per_device_train_batch_size": 32, "seed": 0,
                 "save_strategy": "no"}})
    trainer = train(cfg)
    trainer.save_model(str(out / "model"))
    logs = [h for h in trainer.state.log_history if "reward" in h]
    assert len(logs) == steps and all(h["er/math_reward_errors"] == 0 for h in logs)
    assert statistics.fmean(h["er/math_cut_share"] for h in logs[:WINDOW]) >= 0.6  # the budget binds (0.76 measured)
    return out / "model", [h.get("er/math_reward_cut_mean", math.nan) for h in logs]


def _learned(verify_task, tmp_path, learning_rate: float, steps: int = STEPS) -> tuple[float, float, list[float]]:
    """(accuracy when cut before, after training, the training log's reward of cut rollouts per step)."""
    _, start, problems = verify_task
    before, _ = _accuracy_when_cut(start, problems)
    model, reward_cut = _train(verify_task, tmp_path, learning_rate, steps)
    after, n = _accuracy_when_cut(model, problems)
    print(f"lr {learning_rate}: accuracy when cut {before:.3f} -> {after:.3f} ({n} cut samples); "
          f"er/math_reward_cut_mean per step {[round(r, 3) for r in reward_cut]}")
    return before, after, reward_cut


@pytest.mark.slow
def test_er_grpo_teaches_the_model_to_answer_when_cut(verify_task, tmp_path):
    before, after, reward_cut = _learned(verify_task, tmp_path, LEARNING_RATE)
    assert after >= before + MARGIN, f"accuracy when cut {before:.3f} -> {after:.3f}: cut rollouts gained nothing"
    logged = [v for v in reward_cut if not math.isnan(v)]
    assert statistics.fmean(logged[len(logged) // 2:]) > statistics.fmean(logged[:WINDOW]), reward_cut


@pytest.mark.slow
def test_with_learning_rate_zero_cut_rollouts_gain_nothing(verify_task, tmp_path):
    before, after, _ = _learned(verify_task, tmp_path, 0.0, CONTROL_STEPS)
    assert after == before, f"accuracy when cut moved without learning: {before:.3f} -> {after:.3f}"
    assert not after >= before + MARGIN  # the criterion of the first test fails
