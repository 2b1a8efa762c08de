"""Fixtures for the trainer tests: a real GRPOTrainer on the tiny model (CPU)."""

from __future__ import annotations

import pytest

from er_env.backends.base import SamplingConfig
from er_env.budget import Budget
from er_env.data import load_problems

#: tiny budgets: most completions hit t and get a forced </think>
TINY_BUDGET = Budget(think=16, solution=16)
GROUP_SIZE = 4


def grpo_args(output_dir, **overrides):
    """GRPOConfig for a CPU run of a couple of steps."""
    from trl import GRPOConfig

    kwargs = dict(
        output_dir=str(output_dir), num_generations=GROUP_SIZE, per_device_train_batch_size=8,
        gradient_accumulation_steps=1, max_steps=2, learning_rate=1e-3, beta=0.0, use_cpu=True, bf16=False,
        activation_checkpointing=False, logging_steps=1, save_strategy="no", report_to="none", seed=0,
        temperature=1.0, max_completion_length=40,
    )
    kwargs.update(overrides)
    return GRPOConfig(**kwargs)


@pytest.fixture(scope="session")
def make_grpo_args():
    """``make_grpo_args(output_dir, **overrides)`` -> a CPU GRPOConfig."""
    return grpo_args


@pytest.fixture(scope="session")
def math_problems():
    return load_problems("embedded:math", limit=4)


@pytest.fixture(scope="module")
def tiny_trainer(tiny_model_dir, math_problems, tmp_path_factory):
    """A GRPOTrainer wired with the Elastic Reasoning rollout and math reward (not trained)."""
    import warnings

    from transformers import AutoTokenizer
    from trl import GRPOTrainer

    from trainers.rewards import make_reward_func
    from trainers.rollout import make_rollout_func, problems_to_dataset

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    rollout = make_rollout_func(math_problems, TINY_BUDGET, SamplingConfig(temperature=1.0, seed=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GRPOTrainer(
            model=str(tiny_model_dir), reward_funcs=[make_reward_func("math")],
            args=grpo_args(tmp_path_factory.mktemp("grpo")), train_dataset=problems_to_dataset(math_problems),
            processing_class=tok, rollout_func=rollout,
        )


@pytest.fixture(scope="session")
def quick_sums_model(tmp_path_factory):
    """``er tiny-model --task sums``'s start model (its problems in ``train.jsonl`` beside it), built once.

    The first training (tests/trainers/test_first_run.py) and the short miniature
    (tests/trainers/test_er_effect.py) start from it.
    """
    from er_cli import main as er_main

    out = tmp_path_factory.mktemp("quick-sums") / "start-model"
    assert er_main(["tiny-model", "--task", "sums", "--out", str(out)]) == 0
    assert (out / "train.jsonl").is_file()
    return out
