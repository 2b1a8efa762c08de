"""The README's first training (trainers/recipes/first_run_cpu.yaml) has a learning signal (issue 26).

On the demo's model, the recipe's groups have reward variance, so GRPO has a gradient on every step,
the weights change and the logged reward moves: what the training guide tells a new user to look for
in the log (unlike tiny_cpu.yaml, whose rewards are all 0).
"""

from __future__ import annotations

import hashlib

import pytest

from trainers.config import load_recipe


def _digest(model) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
    return h.hexdigest()


@pytest.mark.slow
def test_first_run_recipe_has_a_learning_signal_and_the_reward_moves(demo_model_dir, tmp_path):
    from trainers.launch import build_trainer

    cfg = load_recipe("first_run_cpu", {"model": str(demo_model_dir), "output_dir": str(tmp_path / "run")})
    assert cfg.model == str(demo_model_dir)
    trainer = build_trainer(cfg)
    before = _digest(trainer.model)
    trainer.train()
    steps = [h for h in trainer.state.log_history if "reward" in h]
    assert len(steps) == cfg.grpo["max_steps"]
    rewards = [h["reward"] for h in steps]
    print("rewards per step:", rewards, "grad norms:", [round(h["grad_norm"], 3) for h in steps])
    # a learning signal: groups whose completions differ in reward, hence a nonzero gradient
    assert steps[0]["reward_std"] > 0 and steps[0]["grad_norm"] > 0
    assert sum(h["grad_norm"] > 0 for h in steps) >= len(steps) - 1
    assert len(set(rewards)) > 1  # the reward moves
    assert _digest(trainer.model) != before
    # the budget binds: thinking is cut at t on most completions (the reason rewards differ)
    assert steps[0]["er/math_cut_share"] > 0.5
