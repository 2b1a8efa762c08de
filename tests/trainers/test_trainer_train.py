"""A real GRPO run on CPU: tiny model, embedded math problems, t = s = 16, groups of 4, 2 steps."""

from __future__ import annotations

import warnings

import pytest

from er_env.backends.base import SamplingConfig
from er_env.budget import Budget
from er_env.rewards.base import RewardResult, solution_phase
from trainers.rewards import make_reward_func
from trainers.rollout import make_rollout_func, problems_to_dataset

DENSE_SEEN: list[list[float]] = []


def solution_length(problems, completions):
    """A dense er_env reward (solution characters / 100), so every group has a learning signal.

    The tiny model never solves the math problems (the math reward is 0 for all), and a zero
    reward variance gives zero advantages and no update; this reward keeps the test meaningful.
    """
    out = [len(solution_phase(c) or "") / 100.0 for c in completions]
    DENSE_SEEN.append(out)
    return [RewardResult(r, "scored") for r in out]


@pytest.mark.slow
def test_grpo_trains_on_budgeted_rollouts(tiny_model_dir, math_problems, make_grpo_args, tmp_path):
    import torch
    from transformers import AutoTokenizer
    from trl import GRPOTrainer

    seen_rollouts, seen_batches = [], []
    DENSE_SEEN.clear()
    rollout = make_rollout_func(math_problems, Budget(think=16, solution=16), SamplingConfig(temperature=1.0, seed=0))

    def recording_rollout(prompts, trainer):
        out = rollout(prompts, trainer)
        seen_rollouts.append((list(prompts), out))
        return out

    class RecordingTrainer(GRPOTrainer):
        def _generate_and_score_completions(self, inputs):
            batch = super()._generate_and_score_completions(inputs)
            seen_batches.append(batch)
            return batch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = RecordingTrainer(
            model=str(tiny_model_dir), processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
            reward_funcs=[make_reward_func("math", reward=solution_length, name="solution_length"),
                          make_reward_func("math")],
            args=make_grpo_args(tmp_path, max_steps=2), train_dataset=problems_to_dataset(math_problems),
            rollout_func=recording_rollout,
        )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()

    assert trainer.state.global_step == 2
    assert len(seen_rollouts) == 2 and len(seen_batches) == 2
    # TRL hands the rollout each prompt num_generations times; one completion comes back per prompt
    prompts, out = seen_rollouts[0]
    assert len(prompts) == 8 and all(prompts[i] == prompts[i - i % 4] for i in range(8))
    assert len(out["completion_ids"]) == 8
    # env_mask (forced </think> = 0) reached the trainer as its tool_mask and so the loss mask
    forced_seen = 0
    for (_, out), batch in zip(seen_rollouts, seen_batches, strict=True):
        mask = batch["tool_mask"]
        for row, env_mask in enumerate(out["env_mask"]):
            assert mask[row, : len(env_mask)].tolist() == env_mask
            forced_seen += env_mask.count(0)
    assert forced_seen > 0, "t=16 should force </think> somewhere in 16 completions"
    logs = [h for h in trainer.state.log_history if "reward" in h]
    assert len(logs) == 2
    # what TRL logged is what the budgeted rollouts earned: the summed reward per step is the mean
    # dense reward of that step's completions plus the (real, graded) math reward's mean
    assert len(DENSE_SEEN) == 2
    for h, dense in zip(logs, DENSE_SEEN, strict=True):
        assert 0.0 <= h["rewards/math_reward/mean"] <= 1.0
        assert sum(dense) > 0
        assert h["rewards/solution_length/mean"] == pytest.approx(sum(dense) / len(dense), abs=1e-5)
        assert h["reward"] == pytest.approx(sum(dense) / len(dense) + h["rewards/math_reward/mean"], abs=1e-5)
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert changed, "no parameter changed after two GRPO steps"


@pytest.mark.slow
def test_er_train_cli_runs_the_tiny_recipe(tiny_model_dir, tmp_path, capsys):
    from er_cli import main

    rc = main(["train", "--config", "tiny_cpu", "--model", str(tiny_model_dir), "--output-dir", str(tmp_path),
               "--grpo", "{max_steps: 1, disable_tqdm: true}"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "trained 1 steps" in out and f"output in {tmp_path}" in out
