"""Gymnasium conformance of every registered ElasticReasoning-* id (like Gymnasium's tests/envs)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env, data_equivalence

import er_env  # noqa: F401 - registers the ids
from er_env.envs import ENV_IDS

REGISTERED = sorted(k for k in gym.registry if k.startswith("ElasticReasoning-"))


def test_registry_holds_exactly_the_declared_ids():
    assert REGISTERED == sorted(ENV_IDS) == ["ElasticReasoning-Code-v0", "ElasticReasoning-Math-v0"]
    for env_id in REGISTERED:
        spec = gym.spec(env_id)
        assert isinstance(spec.entry_point, str) and spec.entry_point.count(":") == 1


def test_register_envs_is_idempotent():
    er_env.envs.register_envs()
    er_env.envs.register_envs()
    assert sorted(k for k in gym.registry if k.startswith("ElasticReasoning-")) == REGISTERED


def test_import_is_light_and_plain_gymnasium_can_make():
    code = (
        "import sys, gymnasium as gym\n"
        "import er_env\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'\n"
        "assert 'er_env.envs.elastic_env' not in sys.modules\n"
        "spec = gym.spec('ElasticReasoning-Code-v0')\n"
        "assert spec.kwargs == {'task': 'code', 'tokenizer': 'tiny'}\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # `module:id` makes Gymnasium import er_env itself, for users who only import gymnasium
    code2 = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "import gymnasium as gym\n"
        "from env_fakes import CharTokenizer\n"
        "env = gym.make('er_env:ElasticReasoning-Math-v0', tokenizer=CharTokenizer())\n"
        "print(env.spec.id)\n"
    )
    out2 = subprocess.run([sys.executable, "-c", code2], capture_output=True, text=True, timeout=120)
    assert out2.returncode == 0 and "ElasticReasoning-Math-v0" in out2.stdout, out2.stderr


@pytest.mark.parametrize("action_mode", ["tokens", "text"])
@pytest.mark.parametrize("env_id", REGISTERED)
def test_check_env(make_env, env_id, action_mode):
    env = make_env(env_id, action_mode=action_mode, think_budget_tokens=8, solution_budget_tokens=8,
                   max_chunk_tokens=6, max_chunk_chars=12, render_mode="ansi")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert not [w for w in caught if "gymnasium" in str(w.filename)], [str(w.message) for w in caught]


def _rollout(env, seed: int, steps: int):
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    trace = [(obs, info)]
    for _ in range(steps):
        obs, reward, term, trunc, info = env.step(env.action_space.sample())
        trace.append((obs, reward, term, trunc, info))
        if term or trunc:
            obs, info = env.reset()
            trace.append((obs, info))
    return trace


@pytest.mark.parametrize("env_id", REGISTERED)
def test_seeded_rollouts_are_deterministic(make_env, env_id):
    kwargs = dict(think_budget_tokens=6, solution_budget_tokens=6, max_chunk_tokens=4)
    a = _rollout(make_env(env_id, **kwargs), seed=7, steps=25)
    b = _rollout(make_env(env_id, **kwargs), seed=7, steps=25)
    assert data_equivalence(a, b, exact=True)
    c = _rollout(make_env(env_id, **kwargs), seed=8, steps=25)
    assert not data_equivalence(a, c, exact=True)  # the seed matters
    assert any(len(t) == 5 and (t[2] or t[3]) for t in a), "25 random steps under t=s=6 must end an episode"


def test_seed_picks_problems_uniformly(make_env):
    env = make_env()
    seen = {env.reset(seed=s)[1]["problem_id"] for s in range(60)}
    assert len(seen) == len(env.unwrapped.problems)


@pytest.mark.parametrize("env_id", REGISTERED)
def test_check_env_with_tiny_model_tokenizer(tiny_model_dir, env_id, char_tokenizer):
    from env_fakes import fake_rewards

    env = gym.make(env_id, tokenizer=str(tiny_model_dir), reward_fn=fake_rewards(), think_budget_tokens=8,
                   solution_budget_tokens=8, max_chunk_tokens=6)
    check_env(env.unwrapped)
    obs, info = env.reset(seed=0)
    assert info["prompt_text"].endswith("<｜Assistant｜><think>\n")
    tok = env.unwrapped.tokenizer
    assert tok.decode(obs["prompt_ids"].tolist(), skip_special_tokens=False) == info["prompt_text"]
    assert isinstance(obs["prompt_ids"], np.ndarray) and obs["prompt_ids"].dtype == np.int64
