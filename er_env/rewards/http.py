"""Shared plumbing of the sandbox-backed rewards: one client, in-process or over HTTP.

:class:`SandboxReward` owns a :class:`sandbox.service.client.SandboxClient`: in-process
(``endpoint=None``: the judge and math checker run in this process) or remote
(``endpoint="http://host:8000"``: an ``er sandbox serve`` gateway). Subclasses
(:class:`~er_env.rewards.code.CodeReward`, :class:`~er_env.rewards.math.MathReward`)
turn problems into batched requests and verdicts into
:class:`~er_env.rewards.base.RewardResult`.

One implementation: scoring is written once, as a coroutine (:meth:`SandboxReward.acall`
sends every request group concurrently over the client's async path). The blocking
:meth:`SandboxReward.__call__` runs that coroutine on the process's background loop
(:func:`er_env.aio.run_sync`).

Failures never become a silent 0: a failure the client reports
(:class:`sandbox.service.client.SandboxClientError`: transport, a rejected request, a core failure)
gives :func:`~er_env.rewards.base.error_result` entries (``is_error=True``, ``reward=nan``)
with ``on_reward_error="record"``, or raises :class:`~er_env.rewards.base.RewardError`
with ``on_reward_error="raise"``. Anything else is a bug and propagates.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from er_env.aio import run_sync
from er_env.data.schema import Problem
from er_env.rewards.base import RewardError, RewardResult, check_on_reward_error, error_result

__all__ = ["SandboxReward", "RequestGroup"]


@dataclass
class RequestGroup:
    """Items that go to the sandbox in one batched call with the same request options.

    Attributes:
        indices: positions of the items in the caller's batch.
        items: the request items (submissions or math checks), aligned with ``indices``.
        options: per-request options (limits, compare mode).
    """

    indices: list[int] = field(default_factory=list)
    items: list[Any] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)


class SandboxReward:
    """Base of the sandbox-backed reward callables.

    Subclasses set :attr:`task` and the client's async batch method (:attr:`abatch_method`)
    and implement :meth:`_plan` and :meth:`_result`.

    Args:
        endpoint: reward server URL, or ``None`` to run in-process.
        on_reward_error: ``"record"`` (failures become ``is_error`` results with ``reward=nan``)
            or ``"raise"`` (raise :class:`RewardError`).
        client_options: :class:`sandbox.service.client.SandboxClient` keyword arguments
            (``timeout_s``, ``max_retries``, ``backoff_s``, ``max_concurrency``, ``batch_size``, ``api_key``,
            ``verify``...). A keyed server's key comes from ``api_key``, else ``$ER_API_KEY``, else the file
            ``$ER_API_KEY_FILE`` (so ``er eval --reward-endpoint`` and ``er train`` recipes need no flag);
            it is never logged nor shown in ``repr``.
        service_options: in-process only: :class:`sandbox.service.service.ServiceConfig` keyword arguments.

    Raises:
        ValueError: an unknown ``on_reward_error``.

    """

    task = ""
    abatch_method = ""

    def __init__(self, endpoint: str | None = None, *, on_reward_error: str = "record",
                 client_options: Mapping[str, Any] | None = None,
                 service_options: Mapping[str, Any] | None = None) -> None:
        self.endpoint = endpoint
        self.on_reward_error = check_on_reward_error(on_reward_error, type(self).__name__)
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

    # ----------------------------------------------------------- subclass hooks
    def _plan(self, problems: Sequence[Problem], completions: Sequence[str]
              ) -> tuple[list[RequestGroup], dict[int, RewardResult]]:
        """Request groups for the batch, plus results known without a request (broken specs)."""
        raise NotImplementedError

    def _result(self, reply: Any) -> RewardResult:
        """One client reply (verdict) -> :class:`RewardResult`."""
        raise NotImplementedError

    # ------------------------------------------------------------------ scoring
    def __call__(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[RewardResult]:
        """Score ``completions[i]`` for ``problems[i]`` (blocking; request groups run concurrently).

        Args:
            problems: problems of this reward's task.
            completions: full completions (thinking, ``</think>``, solution), one per problem.

        Returns:
            One :class:`RewardResult` per completion, in order.

        Raises:
            ValueError: lengths differ or a problem is of another task.
            RewardError: a grader failure with ``on_reward_error="raise"``.

        """
        return run_sync(self.acall(problems, completions))

    async def acall(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[RewardResult]:
        """Async :meth:`__call__` (same arguments, results and errors): the one implementation."""
        from sandbox.service.client import SandboxClientError

        self._check_lengths(problems, completions)
        groups, out = self._plan(problems, completions)
        send = getattr(self.client, self.abatch_method)

        async def one(group: RequestGroup) -> None:
            try:
                replies = await send(group.items, **group.options)
            except SandboxClientError as exc:  # transport / rejected request / server failure
                results = self._failed(exc, len(group.items))
            else:
                results = [self._result(r) for r in replies]
            out.update(zip(group.indices, results, strict=True))

        await asyncio.gather(*(one(g) for g in groups))
        return self._guard([out[i] for i in range(len(problems))])

    def _check_lengths(self, problems: Sequence[Problem], completions: Sequence[str]) -> None:
        if len(problems) != len(completions):
            raise ValueError(f"{type(self).__name__}: got {len(problems)} problems but {len(completions)} "
                             "completions; pass one completion per problem (repeat problems for several samples)")
        for p in problems:
            if p.task != self.task:
                raise ValueError(f"{type(self).__name__} scores {self.task!r} problems, got {p.task!r} problem "
                                 f"{p.id!r}; use default_reward({p.task!r})")

    def _failed(self, exc: BaseException, n: int) -> list[RewardResult]:
        """``n`` error results for a failed request (or raise with ``on_reward_error="raise"``)."""
        where = self.endpoint or "in-process sandbox"
        reason = f"{type(exc).__name__}: {exc}"
        if self.on_reward_error == "raise":
            raise RewardError(f"{type(self).__name__} could not score via {where}: {reason}") from exc
        return [error_result(reason, kind=type(exc).__name__, endpoint=where) for _ in range(n)]

    def _guard(self, results: list[RewardResult]) -> list[RewardResult]:
        if self.on_reward_error == "raise":
            bad = next((r for r in results if r.is_error), None)
            if bad is not None:
                raise RewardError(f"{type(self).__name__}: grader failed: {bad.details.get('error', bad.verdict)}")
        return results

    def close(self) -> None:
        """Close the client (and the in-process sandbox it built)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> "SandboxReward":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
