r"""Math reward: the completion's final ``\boxed{}`` answer against the problem's gold answers.

Uses ``problem.answers`` and ``problem.answers_required`` (``"any"``: one gold answer
suffices; ``"all"``: a multi-part answer). Extraction (last box after ``</think>``) and
equivalence (math-verify, numeric tolerance, a hard timeout per check) happen in
:mod:`sandbox.mathcheck`, in-process or behind ``er sandbox serve``.

Verdicts (``RewardResult.verdict``): ``correct`` (1.0), ``wrong``, ``no_answer``,
``timeout`` (the check ran past its limit: 0.0, not an error), and ``internal_error``
(``is_error=True``: the checker or the server failed; never trained on).
``details`` holds ``extracted``, ``matched_gold`` and ``reason``.

Example:
    >>> from er_env.data.schema import Problem
    >>> reward = MathReward()                                        # doctest: +SKIP
    >>> p = Problem(id="demo/0", task="math", question="1/2 = ?", answers=("\\frac{1}{2}",))
    >>> reward([p], ["...</think> The answer is \\boxed{0.5}."])[0].reward   # doctest: +SKIP
    1.0

"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from er_env.data.schema import Problem
from er_env.rewards.base import RewardResult
from er_env.rewards.http import SandboxReward

__all__ = ["MathReward"]

_CHECKER_TO_SERVICE = {"timeout_s": "math_timeout_s", "workers": "math_workers"}


class MathReward(SandboxReward):
    """Scores math completions against gold answers.

    Args:
        endpoint: reward server URL, or ``None`` to check in-process.
        raise_on_error: raise ``RewardError`` instead of returning error results.
        client_options: :class:`sandbox.service.client.SandboxClient` keyword arguments.
        **checker_kwargs: in-process only: :class:`sandbox.mathcheck.MathCheckerConfig` fields
            (``timeout_s``, ``workers``, ``fallback_to_thinking``...). With an endpoint these are
            the server's settings (``er sandbox serve --math-timeout-s ...``) and are rejected here.

    Raises:
        ValueError: checker settings given together with an endpoint.

    """

    task = "math"

    def __init__(self, endpoint: str | None = None, *, raise_on_error: bool = False,
                 client_options: Mapping[str, Any] | None = None, **checker_kwargs: Any) -> None:
        if endpoint is not None and checker_kwargs:
            raise ValueError(f"MathReward: checker settings {sorted(checker_kwargs)} apply to the server at "
                             f"{endpoint!r}; set them there (er sandbox serve --math-timeout-s/--math-workers/"
                             "--math-options) or use endpoint=None")
        service: dict[str, Any] = {}
        other = {}
        for key, value in checker_kwargs.items():
            if key in _CHECKER_TO_SERVICE:
                service[_CHECKER_TO_SERVICE[key]] = value
            else:
                other[key] = value
        if other:
            service["math_options"] = other
        super().__init__(endpoint, raise_on_error=raise_on_error, client_options=client_options,
                         service_options=service)

    @staticmethod
    def _item(problem: Problem, completion: str) -> dict[str, Any]:
        return {"gold": list(problem.answers), "completion": completion, "require": problem.answers_required}

    @staticmethod
    def _result(verdict: Any) -> RewardResult:
        details = {"extracted": verdict.extracted, "matched_gold": verdict.matched_gold, "reason": verdict.reason,
                   "elapsed_s": verdict.elapsed_s}
        if verdict.is_error:
            details["error"] = verdict.reason
            return RewardResult(reward=0.0, verdict="internal_error", is_error=True, details=details)
        return RewardResult(reward=float(verdict.reward), verdict=verdict.status.wire_name, details=details)

    def __call__(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[RewardResult]:
        """Score ``completions[i]`` against ``problems[i]``'s gold answers.

        Args:
            problems: math problems.
            completions: full completions (thinking, ``</think>``, solution), one per problem.

        Returns:
            One :class:`RewardResult` per completion, in order.

        Raises:
            ValueError: lengths differ or a problem is not a math problem.
            RewardError: a grader failure with ``raise_on_error=True``.

        """
        self._check_lengths(problems, completions)
        if not problems:
            return []
        items = [self._item(p, c) for p, c in zip(problems, completions, strict=True)]
        try:
            verdicts = self.client.check_math_batch(items)
        except Exception as exc:  # transport / server / request failure: error results, never 0
            return self._failed(exc, len(items))
        return self._guard([self._result(v) for v in verdicts])

    async def acall(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[RewardResult]:
        """Async :meth:`__call__` (batched, over the client's async path)."""
        self._check_lengths(problems, completions)
        if not problems:
            return []
        items = [self._item(p, c) for p, c in zip(problems, completions, strict=True)]
        try:
            verdicts = await self.client.acheck_math_batch(items)
        except Exception as exc:
            return self._failed(exc, len(items))
        return self._guard([self._result(v) for v in verdicts])
