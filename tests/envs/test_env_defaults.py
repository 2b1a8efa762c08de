"""Defaults: gym.make with no tokenizer builds (once) and reuses the cached tiny model."""

from __future__ import annotations

import shutil

import gymnasium as gym
from env_fakes import fake_rewards

import er_env  # noqa: F401
from er_env.envs import tokenizer_cache


def test_default_tokenizer_is_built_once_into_the_cache(tiny_model_dir, tmp_path, monkeypatch):
    import er_tools.tiny_model as tiny_model

    builds = []

    def fake_build(out_dir, **kw):  # the real build is tested by E1; copy the session's model instead
        builds.append(out_dir)
        shutil.copytree(tiny_model_dir, out_dir)
        return out_dir

    monkeypatch.setenv("ER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(tiny_model, "build_tiny_model", fake_build)
    tokenizer_cache._from_path.cache_clear()
    env = gym.make("ElasticReasoning-Math-v0", reward_fn=fake_rewards())
    env2 = gym.make("ElasticReasoning-Code-v0", reward_fn=fake_rewards())
    assert builds == [tmp_path / "cache" / "tiny-model"]
    assert env.unwrapped.tokenizer is env2.unwrapped.tokenizer  # loaded once per process
    obs, info = env.reset(seed=0)
    assert info["prompt_text"].endswith("<｜Assistant｜><think>\n")
    assert (info["think_budget_tokens"], info["solution_budget_tokens"]) == (64, 64)
    assert env.unwrapped.action_mode == "tokens" and env.unwrapped.problems[0].source == "embedded"
    tokenizer_cache._from_path.cache_clear()
