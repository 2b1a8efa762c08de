"""Defaults: the tokenizer default is explicit ("tiny"), bundled (no build, no race) and announced."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import gymnasium as gym
import pytest
from env_fakes import fake_rewards

import er_env  # noqa: F401
from er_env import tokens
from er_env.tokens import TINY_TOKENIZER_DIR, DefaultTokenizerWarning, TokenizerNotFound, load_tokenizer


def test_registered_default_is_explicit():
    for env_id in ("ElasticReasoning-Math-v0", "ElasticReasoning-Code-v0"):
        assert gym.spec(env_id).kwargs["tokenizer"] == "tiny"


def test_default_tokenizer_is_bundled_and_announced():
    tokens._pretrained.cache_clear()
    with pytest.warns(DefaultTokenizerWarning, match="tiny test tokenizer"):
        env = gym.make("ElasticReasoning-Math-v0", reward_fn=fake_rewards())
    with pytest.warns(DefaultTokenizerWarning):
        env2 = gym.make("ElasticReasoning-Code-v0", reward_fn=fake_rewards())
    assert env.unwrapped.tokenizer is env2.unwrapped.tokenizer  # loaded once per process
    obs, info = env.reset(seed=0)
    assert info["prompt_text"].endswith("<｜Assistant｜><think>\n")
    assert (info["think_budget_tokens"], info["solution_budget_tokens"]) == (64, 64)
    assert env.unwrapped.action_mode == "tokens" and env.unwrapped.problems[0].source == "embedded"


def test_parallel_first_use_is_safe():
    # vector envs / several workers making the env at once: nothing is built, nothing races
    tokens._pretrained.cache_clear()
    with pytest.warns(DefaultTokenizerWarning), ThreadPoolExecutor(4) as pool:
        envs = list(pool.map(lambda _: gym.make("ElasticReasoning-Math-v0", reward_fn=fake_rewards()), range(4)))
    assert len({len(e.unwrapped.tokenizer) for e in envs}) == 1


def test_bundled_tokenizer_equals_a_fresh_build(tmp_path):
    from er_tools.tiny_model import build_tiny_tokenizer

    fresh = build_tiny_tokenizer(tmp_path / "tok")
    shipped = sorted(p.name for p in TINY_TOKENIZER_DIR.iterdir())
    assert shipped == sorted(p.name for p in fresh.iterdir())
    for name in shipped:
        assert (TINY_TOKENIZER_DIR / name).read_bytes() == (fresh / name).read_bytes(), (
            f"er_env/data/tiny_tokenizer/{name} drifted from er_tools.tiny_model; rebuild it with "
            "build_tiny_tokenizer('er_env/data/tiny_tokenizer')")


def test_hub_names_go_through_from_pretrained(monkeypatch):
    import transformers

    seen = []
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda name: seen.append(name) or "TOK")
    tokens._pretrained.cache_clear()
    assert load_tokenizer("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B") == "TOK"
    assert seen == ["deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"]
    tokens._pretrained.cache_clear()


def test_unreachable_hub_name_is_a_clear_offline_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the variable once, at import: set what it read too (else, with the hub already
    # imported by an earlier test, the load tries the unreachable network and retries for ~40 s)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    tokens._pretrained.cache_clear()
    with pytest.raises(TokenizerNotFound, match="HF_HUB_OFFLINE.*'tiny'"):
        load_tokenizer("no-such-org/no-such-model-xyz")


@pytest.mark.parametrize("bad", ["./missing-dir", "/nonexistent/tok", "  "])
def test_missing_paths(bad):
    with pytest.raises(TokenizerNotFound, match="does not exist"):
        load_tokenizer(bad)


def test_env_and_backend_agree_on_eos_ids(tiny_model_dir, tmp_path):
    """The generation config's extra EOS id ends an env episode exactly where it ends a backend rollout."""
    from er_env.backends.hf import HFBackend

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    cfg = json.loads((model_dir / "generation_config.json").read_text())
    extra = 7
    cfg["eos_token_id"] = [cfg["eos_token_id"], extra]
    (model_dir / "generation_config.json").write_text(json.dumps(cfg))
    env = gym.make("ElasticReasoning-Math-v0", tokenizer=str(model_dir), reward_fn=fake_rewards())
    backend = HFBackend(str(model_dir))
    assert extra in env.unwrapped.special.eos
    assert env.unwrapped.special == backend.special
