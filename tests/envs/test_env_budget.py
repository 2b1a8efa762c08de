"""Episode semantics: budgets, forced </think>, termination, rewards, info, bad input."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from env_fakes import down_reward, erroring_reward, fake_rewards

from er_env.data.schema import Problem
from er_env.rewards.base import RewardError

FINAL_KEYS = {
    "completion_ids", "env_mask", "forced_mask", "logprobs", "thinking_tokens", "solution_tokens",
    "thinking_truncated", "think_finish_reason", "finish_reason", "completion_text", "reward", "verdict",
    "is_error", "reward_details", "problem_id",
}
STEP_KEYS = {"phase", "tokens_offered", "tokens_kept", "tokens_cut", "forced_think_end", "thinking_tokens",
             "solution_tokens", "remaining_tokens"}


def _ids(tok, text):
    return np.asarray(tok.encode(text), dtype=np.int64)


def test_reset_returns_prompt_and_budgets(make_env, char_tokenizer):
    env = make_env(think_budget_tokens=10, solution_budget_tokens=7)
    obs, info = env.reset(seed=3, options={"problem_id": "embedded/math/gcd"})
    assert info["problem_id"] == "embedded/math/gcd" and info["task"] == "math"
    assert (info["think_budget_tokens"], info["solution_budget_tokens"]) == (10, 7)
    assert "greatest common divisor" in info["prompt_text"]
    assert "within \\boxed{}" in info["prompt_text"] and info["prompt_text"].endswith("<think>\n")
    assert char_tokenizer.decode(obs["prompt_ids"].tolist()) == info["prompt_text"]
    assert obs["completion_ids"].size == 0 and obs["phase"] == 0 and obs["remaining_tokens"] == 10


def test_thinking_budget_cut_forces_think_end_and_switches_phase(make_env, char_tokenizer):
    tok = char_tokenizer
    env = make_env(think_budget_tokens=5, solution_budget_tokens=20, max_chunk_tokens=16)
    env.reset(seed=0, options={"problem_id": "embedded/math/gcd"})
    obs, r, term, trunc, info = env.step(_ids(tok, "abc"))
    assert (info["tokens_kept"], info["tokens_cut"], info["phase"]) == (3, 0, "thinking")
    assert obs["remaining_tokens"] == 2
    obs, r, term, trunc, info = env.step(_ids(tok, "defghij"))  # 2 fit, 5 past t are cut
    assert (info["tokens_kept"], info["tokens_cut"], info["forced_think_end"]) == (2, 5, True)
    assert info["phase"] == "solution" and obs["phase"] == 1 and obs["remaining_tokens"] == 20
    assert tok.decode(obs["completion_ids"].tolist()) == "abcde</think>"
    assert (r, term, trunc) == (0.0, False, False)
    obs, r, term, trunc, info = env.step(_ids(tok, "\\boxed{42}<eos>junk"))  # tokens after EOS are dropped
    assert term and not trunc and r == 1.0 and info["verdict"] == "correct"
    assert FINAL_KEYS | STEP_KEYS <= set(info)
    assert info["tokens_cut"] == 4 and info["finish_reason"] == "eos" and info["think_finish_reason"] == "budget"
    assert info["thinking_truncated"] and info["thinking_tokens"] == 5 and info["solution_tokens"] == 11
    assert info["env_mask"] == [1] * 5 + [0] + [1] * 11 and info["forced_mask"] == [0] * 5 + [1] + [0] * 11
    assert info["completion_text"] == "abcde</think>\\boxed{42}"


def test_natural_think_end_is_trainable_and_solution_budget_terminates(make_env, char_tokenizer):
    tok = char_tokenizer
    env = make_env(think_budget_tokens=50, solution_budget_tokens=4, max_chunk_tokens=32)
    env.reset(seed=0, options={"problem_index": 0})
    obs, r, term, trunc, info = env.step(_ids(tok, "ok</think>1234567"))
    assert term and not trunc and info["finish_reason"] == "budget" and info["think_finish_reason"] == "think_end"
    assert not info["thinking_truncated"] and all(info["env_mask"]) and info["tokens_cut"] == 3
    assert info["completion_text"] == "ok</think>1234" and r == 0.0 and info["verdict"] == "wrong"


def test_eos_while_thinking_is_replaced_by_forced_think_end(make_env, char_tokenizer):
    env = make_env(think_budget_tokens=50, solution_budget_tokens=8)
    env.reset(seed=0)
    obs, r, term, trunc, info = env.step(_ids(char_tokenizer, "hm<eos>more"))
    assert not term and info["forced_think_end"] and info["tokens_cut"] == 5  # EOS and what followed
    assert char_tokenizer.decode(obs["completion_ids"].tolist()) == "hm</think>"


def test_train_forced_token_marks_forced_tokens_trainable(make_env, char_tokenizer):
    env = make_env(think_budget_tokens=2, solution_budget_tokens=2, train_forced_token=True)
    env.reset(seed=0)
    info = env.step(_ids(char_tokenizer, "abcd"))[4]
    info = env.step(_ids(char_tokenizer, "xy"))[4]
    assert info["forced_mask"] == [0, 0, 1, 0, 0] and info["env_mask"] == [1] * 5


def test_context_length_truncates(make_env, char_tokenizer):
    env = make_env(think_budget_tokens=50, solution_budget_tokens=50, context_length=10_000)
    prompt_len = len(env.reset(seed=0, options={"problem_index": 1})[0]["prompt_ids"])
    env = make_env(think_budget_tokens=50, solution_budget_tokens=50, context_length=prompt_len + 6)
    env.reset(seed=0, options={"problem_index": 1})
    obs, r, term, trunc, info = env.step(_ids(char_tokenizer, "a</think>bcdefgh"))
    assert trunc and not term and info["finish_reason"] == "length" and len(info["completion_ids"]) == 6
    assert not math.isnan(r)  # a truncated completion is still scored


def test_text_action_mode(make_env):
    env = make_env(action_mode="text", think_budget_tokens=20, solution_budget_tokens=40)
    env.reset(seed=0, options={"problem_id": "embedded/math/factorial"})
    env.step("5! = 120")
    obs, r, term, trunc, info = env.step("</think>The answer is \\boxed{120}.<eos>")
    assert term and r == 1.0 and info["completion_text"] == "5! = 120</think>The answer is \\boxed{120}."
    with pytest.raises(TypeError, match="str action"):
        env.reset(seed=0)
        env.step([1, 2, 3])


def test_code_env_uses_code_reward_and_template(make_env):
    env = make_env("ElasticReasoning-Code-v0", action_mode="text", think_budget_tokens=4, solution_budget_tokens=60,
                   max_chunk_chars=200)
    obs, info = env.reset(seed=0, options={"problem_id": "embedded/code/sum-two"})
    assert "### Format: Read the inputs from stdin" in info["prompt_text"]
    env.step("plan")
    obs, r, term, trunc, info = env.step("```python\nprint(sum(map(int, input().split())))\n```<eos>")
    assert term and r == 1.0 and info["verdict"] == "AC"


def test_custom_problem_list_and_options(make_env):
    probs = [Problem(id=f"p{i}", task="math", question=f"What is {i}+{i}?", answers=(str(2 * i),)) for i in range(3)]
    env = make_env(dataset=probs)
    assert env.reset(options={"problem_index": 2})[1]["problem_id"] == "p2"
    with pytest.raises(ValueError, match="problem_index"):
        env.reset(options={"problem_index": 3})
    with pytest.raises(ValueError, match="not in this environment's dataset"):
        env.reset(options={"problem_id": "nope"})
    with pytest.raises(ValueError, match="must hold math Problem"):
        make_env(dataset=[probs[0], {"id": "x"}])


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("action", "exc", "match"),
    [
        ([5, -1], ValueError, r"Invalid token id\(s\) \[-1\]"),
        ([5, 10**6], ValueError, r"Invalid token id\(s\) \[1000000\]"),
        (np.array([1.5, 2.0]), TypeError, "1-D integer"),
        (np.zeros((2, 2), dtype=np.int64), TypeError, "1-D integer"),
        ("some text", TypeError, "action_mode='text'"),
        (None, TypeError, "sequence of token ids"),
        (list(range(10, 80)), ValueError, "max_chunk_tokens=64"),
    ],
)
def test_bad_actions_raise_clearly(make_env, action, exc, match):
    env = make_env()
    env.reset(seed=0)
    with pytest.raises(exc, match=match):
        env.unwrapped.step(action)
    env.unwrapped.step([20, 21])  # the episode is still usable


def test_step_before_reset_and_after_end(make_env, char_tokenizer):
    env = make_env(think_budget_tokens=1, solution_budget_tokens=1).unwrapped
    with pytest.raises(gym.error.ResetNeeded, match="reset"):
        env.step([20])
    env.reset(seed=0)
    env.step([20])
    *_, term, trunc, _ = env.step([21])
    assert term
    with pytest.raises(gym.error.ResetNeeded, match="finished"):
        env.step([22])


@pytest.mark.parametrize("reward_fn", [down_reward, erroring_reward])
def test_reward_failure_is_explicit_never_zero(make_env, char_tokenizer, reward_fn):
    env = make_env(reward_fn=reward_fn, think_budget_tokens=2, solution_budget_tokens=2)
    env.reset(seed=0)
    *_, info = env.step(_ids(char_tokenizer, "ab"))
    obs, r, term, trunc, info = env.step(_ids(char_tokenizer, "cd"))
    assert term and math.isnan(r) and info["is_error"] and info["verdict"] == "internal_error"
    assert info["reward_details"]["error"]
    strict = make_env(reward_fn=reward_fn, think_budget_tokens=2, solution_budget_tokens=2, on_reward_error="raise")
    strict.reset(seed=0)
    strict.step(_ids(char_tokenizer, "ab"))
    with pytest.raises(RewardError):
        strict.step(_ids(char_tokenizer, "cd"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"think_budget_tokens": 0}, "think_budget_tokens must be a positive int"),
        ({"solution_budget_tokens": 1.5}, "solution_budget_tokens must be a positive int"),
        ({"action_mode": "logits"}, "action_mode must be one of"),
        ({"task": "chess"}, "task must be 'math' or 'code'"),
        ({"dataset": "aime"}, "Did you mean 'aime2024'"),
        ({"dataset": "embedded:math", "split": "train"}, "no split 'train'"),
        ({"dataset": "embedded:code"}, "is a code problem but task='math'"),
        ({"on_reward_error": "ignore"}, "on_reward_error must be one of"),
        ({"tokenizer": 42}, "tokenizer must be .tiny., a path, a hub name or a tokenizer object"),
        ({"tokenizer": "/nonexistent/model"}, "does not exist"),
    ],
)
def test_bad_constructor_arguments(make_env, kwargs, match):
    with pytest.raises((ValueError, TypeError, LookupError, FileNotFoundError), match=match):
        make_env(**kwargs)


def test_default_reward_is_used_when_none_given(make_env, monkeypatch):
    """reward_fn=None resolves er_env.rewards.default_reward(task, endpoint=...) lazily, per task."""
    import er_env.rewards as rewards

    calls = []

    def fake_default(task, endpoint=None, **kw):
        calls.append((task, endpoint))
        return fake_rewards()[task]

    monkeypatch.setattr(rewards, "default_reward", fake_default, raising=False)
    env = make_env(reward_fn=None, reward_endpoint="http://127.0.0.1:1", think_budget_tokens=1,
                   solution_budget_tokens=1)
    env.reset(seed=0)
    env.step([20])
    assert calls == []  # not built until an episode ends
    env.step([21])
    assert calls == [("math", "http://127.0.0.1:1")]


def test_real_reward_client_with_endpoint_down(make_env, char_tokenizer):
    """The real HTTP reward client against a closed port: an explicit error verdict, reward nan."""
    import socket

    with socket.socket() as s:  # a free local port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = make_env(reward_fn=None, reward_endpoint=f"http://127.0.0.1:{port}", think_budget_tokens=2,
                   solution_budget_tokens=2)
    env.reset(seed=0)
    env.step(_ids(char_tokenizer, "ab"))
    obs, r, term, trunc, info = env.step(_ids(char_tokenizer, "cd"))
    assert term and math.isnan(r) and info["is_error"] and info["verdict"] == "internal_error", info
