"""The README's first training visibly learns (issue 26).

Exactly the commands the README and the training guide show, in-process: ``er tiny-model --task sums``
builds the quick start model and its problems, then ``er train --config
trainers/recipes/first_run_cpu.yaml`` (through :func:`trainers.launch.train`, what ``er train`` runs).
The recipe's comment tells a user what to see in the log: the reward rising, the share of rollouts cut
falling, a nonzero gradient. This test holds the run to that, so a trainer that ignores the rewards,
the budget or the learning rate fails it (with learning rate 0 the reward does not rise).
"""

from __future__ import annotations

import statistics

import pytest

from er_cli import main as er_main
from trainers.config import load_recipe

WINDOW = 4


@pytest.fixture
def start_model(quick_sums_model):
    """``er tiny-model --task sums --out ...`` (tests/trainers/conftest.py, shared with test_er_effect.py)."""
    return quick_sums_model


def _run(start_model, tmp_path, **grpo):
    from trainers.launch import train

    cfg = load_recipe("first_run_cpu", {"model": str(start_model), "dataset": str(start_model / "train.jsonl"),
                                        "output_dir": str(tmp_path / "run"), "grpo": grpo})
    trainer = train(cfg)
    steps = [h for h in trainer.state.log_history if "reward" in h]
    assert len(steps) == cfg.grpo["max_steps"]
    return steps


@pytest.mark.slow
def test_first_run_recipe_visibly_learns(start_model, tmp_path):
    steps = _run(start_model, tmp_path)
    rewards = [h["reward"] for h in steps]
    cut = [h["er/math_cut_share"] for h in steps]
    print("rewards per step:", [round(r, 3) for r in rewards], "cut share:", [round(c, 2) for c in cut])
    assert steps[0]["grad_norm"] > 0
    assert statistics.fmean(rewards[-WINDOW:]) >= statistics.fmean(rewards[:WINDOW]) + 0.15
    assert statistics.fmean(cut[-WINDOW:]) < statistics.fmean(cut[:WINDOW])


def test_sums_task_refuses_model_shape_flags(tmp_path, capsys):
    with pytest.raises(SystemExit, match="--task sums builds a fixed start model"):
        er_main(["tiny-model", "--task", "sums", "--out", str(tmp_path / "m"), "--multi-token-think-end"])
