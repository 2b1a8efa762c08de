"""Reward types shared by every reward client (stdlib only).

A reward function scores a batch of completions for a batch of problems. It never
turns an infrastructure failure into a wrong answer.

What happens when a grader fails is spelled the same everywhere (rewards, rollout,
environments, trainers): ``on_reward_error="record"`` (default) keeps the failure as a
result with ``is_error=True``, ``verdict="internal_error"`` and ``reward = nan``
(:data:`ERROR_REWARD`; TRL's reward-function contract spells it ``None``, which TRL
turns into ``nan``), so nothing trains on it and the count shows up in metrics;
``on_reward_error="raise"`` raises :class:`RewardError` instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

from er_env.data.schema import Problem
from sandbox.core.extract import THINK_END, solution_phase  # the one definition of the completion format

__all__ = ["RewardResult", "RewardFunction", "RewardError", "solution_phase", "THINK_END", "error_result",
           "check_on_reward_error", "ON_REWARD_ERROR", "INTERNAL_ERROR", "ERROR_REWARD"]

#: the values of ``on_reward_error`` (rewards, rollout, environments, trainers)
ON_REWARD_ERROR = ("record", "raise")
#: the verdict of a result whose grader failed
INTERNAL_ERROR = "internal_error"
#: the reward of a result whose grader failed (never a number to train on)
ERROR_REWARD = math.nan


class RewardError(RuntimeError):
    """The reward backend could not produce a verdict (server down, internal error)."""


@dataclass(frozen=True)
class RewardResult:
    """The reward for one completion.

    Attributes:
        reward: scalar used for training (1.0/0.0 for binary rewards); ``nan``
            (:data:`ERROR_REWARD`) when ``is_error``.
        verdict: short machine-readable outcome (``"correct"``, ``"wrong"``,
            ``"no_answer"``, ``"timeout"``; code: ``"AC"``, ``"WA"``, ``"TLE"``,
            ``"no_code"``, ...; ``"internal_error"`` when ``is_error``).
        is_error: the grader failed; ``reward`` is meaningless and must not be used.
        details: verdict-specific extras (extracted answer, per-test results...).
    """

    reward: float
    verdict: str
    is_error: bool = False
    details: Mapping[str, Any] = field(default_factory=dict)


class RewardFunction(Protocol):
    """Scores completions.

    ``completions[i]`` is the full completion text (thinking, ``</think>``, solution) for
    ``problems[i]``. A function that cannot produce a verdict returns :func:`error_result`
    entries or raises :class:`RewardError`; any other exception is a bug and propagates.
    """

    def __call__(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[RewardResult]:
        """Score ``completions[i]`` for ``problems[i]``."""
        ...


def error_result(reason: str, **details: Any) -> RewardResult:
    """A result that must not be trained on: ``is_error=True``, ``reward=nan``, the reason in ``details["error"]``.

    Args:
        reason: what failed (quoted in logs).
        **details: extra context (``kind``, ``endpoint``...).

    Returns:
        The error result.

    """
    return RewardResult(reward=ERROR_REWARD, verdict=INTERNAL_ERROR, is_error=True,
                        details={"error": reason, **details})


def check_on_reward_error(value: str, owner: str = "on_reward_error") -> str:
    """Validate an ``on_reward_error`` value.

    Args:
        value: the value to check.
        owner: where it was given (quoted in the error).

    Returns:
        ``value``.

    Raises:
        ValueError: ``value`` is not one of :data:`ON_REWARD_ERROR`.

    """
    if value not in ON_REWARD_ERROR:
        raise ValueError(f"{owner}: on_reward_error must be one of {ON_REWARD_ERROR}, got {value!r} "
                         "('record': keep the failure as an is_error result with reward nan; 'raise': raise "
                         "RewardError).")
    return value
