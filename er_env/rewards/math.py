r"""Math reward: the completion's final ``\boxed{}`` answer against the problem's gold answers.

Uses ``problem.answers`` and ``problem.answers_required`` (``"any"``: one gold answer
suffices; ``"all"``: a multi-part answer). Extraction (last box after ``</think>``) and
equivalence (math-verify, numeric tolerance, a hard timeout per check) happen in
:mod:`sandbox.mathcheck`, in-process or behind ``er sandbox serve``.

Verdicts (``RewardResult.verdict``): ``correct`` (1.0), ``wrong``, ``no_answer``,
``timeout`` (the check ran past its limit: 0.0, not an error), and ``internal_error``
(``is_error=True``, ``reward=nan``: the checker or the server failed; never trained on).
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
from er_env.rewards.base import RewardResult, error_result
from er_env.rewards.http import RequestGroup, SandboxReward

__all__ = ["MathReward"]

_CHECKER_TO_SERVICE = {"timeout_s": "math_timeout_s", "workers": "math_workers"}


class MathReward(SandboxReward):
    """Scores math completions against gold answers.

    Args:
        endpoint: reward server URL, or ``None`` to check in-process.
        on_reward_error: ``"record"`` (grader failures become ``is_error`` results, ``reward=nan``)
            or ``"raise"``.
        client_options: :class:`sandbox.service.client.SandboxClient` keyword arguments.
        **checker_kwargs: in-process only: :class:`sandbox.mathcheck.MathCheckerConfig` fields
            (``timeout_s``, ``workers``, ``fallback_to_thinking``...). With an endpoint these are
            the server's settings (``er sandbox serve --math-timeout-s ...``) and are rejected here.

    Raises:
        ValueError: checker settings given together with an endpoint.

    """

    task = "math"
    abatch_method = "acheck_math_batch"

    def __init__(self, endpoint: str | None = None, *, on_reward_error: str = "record",
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
        super().__init__(endpoint, on_reward_error=on_reward_error, client_options=client_options,
                         service_options=service)

    def _plan(self, problems: Sequence[Problem], completions: Sequence[str]
              ) -> tuple[list[RequestGroup], dict[int, RewardResult]]:
        items = [{"gold": list(p.answers), "completion": c, "require": p.answers_required}
                 for p, c in zip(problems, completions, strict=True)]
        return ([RequestGroup(list(range(len(items))), items)] if items else []), {}

    def _result(self, reply: Any) -> RewardResult:
        details = {"extracted": reply.extracted, "matched_gold": reply.matched_gold, "reason": reply.reason,
                   "elapsed_s": reply.elapsed_s}
        if reply.is_error:
            return error_result(reply.reason, **{k: v for k, v in details.items() if k != "reason"})
        return RewardResult(reward=float(reply.reward), verdict=reply.status.wire_name, details=details)
