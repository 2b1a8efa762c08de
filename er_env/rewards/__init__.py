"""Reward clients: score completions with the sandbox's math checker and code judge.

No grading logic lives here: :class:`MathReward` and :class:`CodeReward` are clients of
:mod:`sandbox` that run it in-process (``endpoint=None``) or call an
``er sandbox serve`` gateway over HTTP (``endpoint="http://127.0.0.1:8000"``); both
give the same results. A grader failure is ``RewardResult(reward=nan, is_error=True,
verdict="internal_error")`` (or :class:`RewardError` with ``on_reward_error="raise"``),
never a silent 0; the same ``on_reward_error`` values hold in rollouts, environments and trainers.

>>> reward = default_reward("math")                              # doctest: +SKIP
>>> reward(problems, completions)                                # doctest: +SKIP
[RewardResult(reward=1.0, verdict='correct', ...), ...]
"""

from __future__ import annotations

from typing import Any

from er_env.rewards.base import (
    ERROR_REWARD,
    INTERNAL_ERROR,
    ON_REWARD_ERROR,
    RewardError,
    RewardFunction,
    RewardResult,
    check_on_reward_error,
    error_result,
    solution_phase,
)
from er_env.rewards.code import CodeReward
from er_env.rewards.math import MathReward

__all__ = ["RewardResult", "RewardFunction", "RewardError", "solution_phase", "MathReward", "CodeReward",
           "default_reward", "error_result", "check_on_reward_error", "ON_REWARD_ERROR", "INTERNAL_ERROR",
           "ERROR_REWARD"]


def default_reward(task: str, endpoint: str | None = None, **kwargs: Any) -> RewardFunction:
    """The reward function for ``task``.

    Args:
        task: ``"math"`` or ``"code"``.
        endpoint: reward server URL, or ``None`` to grade in-process.
        **kwargs: passed to :class:`MathReward` / :class:`CodeReward` (``on_reward_error``,
            ``client_options``, checker or judge settings).

    Returns:
        A callable ``(problems, completions) -> list[RewardResult]``.

    Raises:
        ValueError: unknown task.

    """
    if task == "math":
        return MathReward(endpoint, **kwargs)
    if task == "code":
        return CodeReward(endpoint, **kwargs)
    raise ValueError(f"unknown task {task!r}; use 'math' or 'code'")
