"""TRL reward functions: real completions, task routing, grader failures never become 0."""

from __future__ import annotations

import asyncio
import doctest
import json
import logging

import pytest

from er_env.data import load_problems
from er_env.rewards import default_reward
from er_env.rewards.base import RewardError, RewardResult
from trainers import rewards as rewards_module
from trainers.rewards import code_reward, make_reward_func, math_reward, problem_from_column
from trainers.rollout import PROBLEM_COLUMN, TEXT_FIELD


def _column(problems):
    return [json.dumps(p.to_dict()) for p in problems]


def test_doctest():
    result = doctest.testmod(rewards_module)
    assert result.attempted > 0 and result.failed == 0


def test_math_reward_on_real_rollout_completions(tiny_trainer, math_problems):
    prompts = [p.id for p in math_problems[:2] for _ in range(4)]
    out = tiny_trainer.rollout_func(prompts, tiny_trainer)
    by_id = {p.id: p for p in math_problems}
    problems = [by_id[i] for i in prompts]
    kwargs = {PROBLEM_COLUMN: _column(problems), **{k: v for k, v in out.items() if k not in ("prompt_ids",)}}
    got = asyncio.run(math_reward(prompts=prompts, completions=["ignored"] * len(prompts), **kwargs))
    expected = [r.reward for r in default_reward("math")(problems, out[TEXT_FIELD])]
    assert got == expected
    assert all(v in (0.0, 1.0) for v in got)


def test_decodes_completion_ids_with_think_kept_when_no_text(tiny_trainer, math_problems):
    prompts = [math_problems[0].id] * 2
    out = tiny_trainer.rollout_func(prompts, tiny_trainer)
    reward = make_reward_func("math", tokenizer=tiny_trainer.processing_class)
    seen = []

    def spy(problems, texts):  # an er_env reward function recording what it was given
        seen.extend(texts)
        return default_reward("math")(problems, texts)

    reward.reward = spy
    asyncio.run(reward(prompts=prompts, completions=["x", "x"], completion_ids=out["completion_ids"],
                       **{PROBLEM_COLUMN: _column([math_problems[0]] * 2)}))
    assert seen == out[TEXT_FIELD]
    with pytest.raises(ValueError, match=TEXT_FIELD):
        asyncio.run(make_reward_func("math")(prompts=prompts, completions=["x", "x"],
                                             completion_ids=out["completion_ids"],
                                             **{PROBLEM_COLUMN: _column([math_problems[0]] * 2)}))


def test_code_reward_and_task_routing():
    code = load_problems("embedded:code")[0]  # sum-two: read two ints, print the sum
    math = load_problems("embedded:math")[0]
    good = "Read and add.</think>\n```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    bad = "Guess.</think>\n```python\nprint(0)\n```"
    texts = [good, bad, "</think>\\boxed{5050}"]
    got = asyncio.run(code_reward(prompts=["a", "b", "c"], completions=[""] * 3, **{
        PROBLEM_COLUMN: _column([code, code, math]), TEXT_FIELD: texts}))
    assert got == [1.0, 0.0, None]
    got = asyncio.run(math_reward(prompts=["a", "b", "c"], completions=[""] * 3, **{
        PROBLEM_COLUMN: _column([code, code, math]), TEXT_FIELD: texts}))
    assert got == [None, None, 1.0]


class _FlakyGrader:
    """A fake er_env reward: the second completion hits a grader failure."""

    def __call__(self, problems, completions):
        return [RewardResult(1.0, "correct"), RewardResult(0.0, "internal_error", True, {"error": "checker died"})]


def test_grader_failure_is_none_and_logged(math_problems, caplog):
    metrics = {}
    reward = make_reward_func("math", reward=_FlakyGrader())
    kwargs = {PROBLEM_COLUMN: _column(math_problems[:2]), TEXT_FIELD: ["a", "b"], "thinking_tokens": [3, 5],
              "log_metric": lambda name, value: metrics.__setitem__(name, value)}
    with caplog.at_level(logging.WARNING, logger="trainers.rewards"):
        got = asyncio.run(reward(prompts=["p", "q"], completions=["", ""], **kwargs))
    assert got == [1.0, None]
    assert "checker died" in caplog.text and math_problems[1].id in caplog.text
    assert metrics["er/math_reward_errors"] == 1.0 and metrics["er/math_thinking_tokens_mean"] == 4.0
    strict = make_reward_func("math", reward=_FlakyGrader(), on_reward_error="raise")
    with pytest.raises(RewardError, match="checker died"):
        asyncio.run(strict(prompts=["p", "q"], completions=["", ""], **kwargs))


class _Grader:
    """A fake er_env reward with an async path: reward 1 for texts containing 'ok'."""

    def __init__(self):
        self.async_calls = 0

    def __call__(self, problems, completions):
        raise AssertionError("the TRL reward function must use the async path")

    async def acall(self, problems, completions):
        self.async_calls += 1
        return [RewardResult(1.0 if "ok" in c else 0.0, "correct" if "ok" in c else "wrong") for c in completions]


def test_budget_metrics_cut_vs_not_cut(math_problems):
    """Share cut at t, tokens, and the reward of cut vs not-cut completions (one grader call per batch)."""
    from trl.trainer.utils import is_async_callable

    metrics = {}
    grader = _Grader()
    reward = make_reward_func("math", reward=grader)
    assert is_async_callable(reward)  # TRL runs it on its event loop, concurrently with other reward functions
    kwargs = {PROBLEM_COLUMN: _column(math_problems[:1] * 4), TEXT_FIELD: ["ok", "no", "ok", "ok"],
              "think_finish_reason": ["budget", "budget", "think_end", "eos"], "thinking_tokens": [8, 8, 3, 5],
              "solution_tokens": [2, 4, 6, 8], "thinking_truncated": [True, True, False, True],
              "log_metric": lambda name, value: metrics.__setitem__(name, value)}
    asyncio.run(reward(prompts=["p"] * 4, completions=[""] * 4, **kwargs))
    assert grader.async_calls == 1
    assert metrics["er/math_cut_share"] == 0.5 and metrics["er/math_thinking_truncated_mean"] == 0.75
    assert metrics["er/math_reward_cut_mean"] == 0.5 and metrics["er/math_reward_not_cut_mean"] == 1.0
    assert metrics["er/math_thinking_tokens_mean"] == 6.0 and metrics["er/math_solution_tokens_mean"] == 5.0
    assert metrics["er/math_reward_errors"] == 0.0 and metrics["er/math_checker_timeouts"] == 0.0


class _SlowChecker:
    """A fake er_env reward whose second check ran past the checker's limit (scored 0, not an error)."""

    def __call__(self, problems, completions):
        return [RewardResult(1.0, "correct"), RewardResult(0.0, "timeout", False, {"reason": "timed out after 2 s"})]


def test_checker_timeouts_score_zero_and_are_counted(math_problems):
    metrics = {}
    reward = make_reward_func("math", reward=_SlowChecker())
    kwargs = {PROBLEM_COLUMN: _column(math_problems[:2]), TEXT_FIELD: ["a", "b"],
              "log_metric": lambda name, value: metrics.__setitem__(name, value)}
    assert asyncio.run(reward(prompts=["p", "q"], completions=["", ""], **kwargs)) == [1.0, 0.0]
    assert metrics["er/math_checker_timeouts"] == 1.0 and metrics["er/math_reward_errors"] == 0.0


def test_bad_inputs_are_explained(math_problems):
    with pytest.raises(ValueError, match="problems_to_dataset"):
        asyncio.run(make_reward_func("math")(prompts=["p"], completions=[""], **{TEXT_FIELD: ["x"]}))
    with pytest.raises(ValueError, match="task must be"):
        make_reward_func("physics")
    with pytest.raises(ValueError, match="on_reward_error must be one of .*'zero'"):
        make_reward_func("math", on_reward_error="zero")
    with pytest.raises(ValueError, match="not valid JSON"):
        problem_from_column("{oops")
    assert problem_from_column(math_problems[0].to_dict()) == math_problems[0]
