"""Shared plumbing of the sandbox-backed rewards: one client, in-process or over HTTP.

:class:`SandboxReward` owns a :class:`sandbox.service.client.SandboxClient`: in-process
(``endpoint=None``: the judge and math checker run in this process) or remote
(``endpoint="http://host:8000"``: an ``er sandbox serve`` gateway). Subclasses
(:class:`~er_env.rewards.code.CodeReward`, :class:`~er_env.rewards.math.MathReward`)
turn problems into requests and verdicts into :class:`~er_env.rewards.base.RewardResult`.

Failures never become a silent 0: a transport failure, a rejected request or a core
failure gives ``RewardResult(reward=0.0, verdict="internal_error", is_error=True)`` with
the reason in ``details["error"]``, or raises :class:`~er_env.rewards.base.RewardError`
when ``raise_on_error=True``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Mapping, Sequence

from er_env.data.schema import Problem
from er_env.rewards.base import RewardError, RewardResult

__all__ = ["SandboxReward", "error_result", "INTERNAL_ERROR"]

INTERNAL_ERROR = "internal_error"


def error_result(reason: str, **details: Any) -> RewardResult:
    """A reward that must not be trained on: ``is_error=True``, the reason in ``details["error"]``.

    Args:
        reason: what failed (quoted in logs).
        **details: extra context (``kind``, ``endpoint``...).

    Returns:
        The error result.

    """
    return RewardResult(reward=0.0, verdict=INTERNAL_ERROR, is_error=True, details={"error": reason, **details})


class SandboxReward:
    """Base of the sandbox-backed reward callables.

    Args:
        endpoint: reward server URL, or ``None`` to run in-process.
        raise_on_error: raise :class:`RewardError` instead of returning error results.
        client_options: :class:`sandbox.service.client.SandboxClient` keyword arguments
            (``timeout_s``, ``max_retries``, ``backoff_s``, ``max_concurrency``, ``batch_size``...).
        service_options: in-process only: :class:`sandbox.service.service.ServiceConfig` keyword arguments.

    """

    task = ""

    def __init__(self, endpoint: str | None = None, *, raise_on_error: bool = False,
                 client_options: Mapping[str, Any] | None = None,
                 service_options: Mapping[str, Any] | None = None) -> None:
        self.endpoint = endpoint
        self.raise_on_error = raise_on_error
        self._client_options = dict(client_options or {})
        self._service_config: Any = None
        if endpoint is None:  # validate the in-process settings now, start nothing yet
            from sandbox.service.service import ServiceConfig

            self._service_config = ServiceConfig(**dict(service_options or {}))
        self._client: Any = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(endpoint={self.endpoint!r})"

    @property
    def client(self) -> Any:
        """The :class:`sandbox.service.client.SandboxClient` (built on first use)."""
        if self._client is None:
            from sandbox.service.client import SandboxClient

            self._client = SandboxClient(self.endpoint, service_config=self._service_config, **self._client_options)
        return self._client

    def _check_lengths(self, problems: Sequence[Problem], completions: Sequence[str]) -> None:
        if len(problems) != len(completions):
            raise ValueError(f"{type(self).__name__}: got {len(problems)} problems but {len(completions)} "
                             "completions; pass one completion per problem (repeat problems for several samples)")
        for p in problems:
            if p.task != self.task:
                raise ValueError(f"{type(self).__name__} scores {self.task!r} problems, got {p.task!r} problem "
                                 f"{p.id!r}; use default_reward({p.task!r})")

    def _failed(self, exc: BaseException, n: int) -> list[RewardResult]:
        """``n`` error results for a failed request (or raise when ``raise_on_error``)."""
        where = self.endpoint or "in-process sandbox"
        reason = f"{type(exc).__name__}: {exc}"
        if self.raise_on_error:
            raise RewardError(f"{type(self).__name__} could not score via {where}: {reason}") from exc
        return [error_result(reason, kind=type(exc).__name__, endpoint=where) for _ in range(n)]

    def _guard(self, results: list[RewardResult]) -> list[RewardResult]:
        if self.raise_on_error:
            bad = next((r for r in results if r.is_error), None)
            if bad is not None:
                raise RewardError(f"{type(self).__name__}: grader failed: {bad.details.get('error', bad.verdict)}")
        return results

    def __call__(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[RewardResult]:
        """Score ``completions[i]`` for ``problems[i]`` (blocking)."""
        raise NotImplementedError

    async def acall(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[RewardResult]:
        """Async scoring; the default runs :meth:`__call__` in a thread."""
        return await asyncio.to_thread(self, problems, completions)

    def close(self) -> None:
        """Close the client (and the in-process sandbox it built)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> "SandboxReward":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
