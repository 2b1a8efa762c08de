"""The upstream pool: least-loaded choice among healthy servers, health checks, failover.

Each upstream is one :class:`~er_env.backends.openai.OpenAIBackend` (the two phases
are that backend's), all sharing one ``httpx.AsyncClient`` connection pool. A request
takes a :meth:`UpstreamPool.lease` on the healthy upstream with the fewest requests in
flight and keeps it for both phases (the solution phase then hits the thinking
phase's prefix cache). An upstream that fails to answer (transport error, 5xx) is
marked down until a health check (``GET /v1/models``, which also reports the model
context) finds it up again; the caller retries the request elsewhere if it has not
returned a token yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

import httpx

from er_env.backends.openai import OpenAIBackend

__all__ = ["NoUpstream", "Upstream", "UpstreamPool"]

log = logging.getLogger("er_serving.proxy")


class NoUpstream(RuntimeError):
    """No healthy upstream is left to try."""


@dataclass(eq=False)
class Upstream:
    """One upstream server and its live state."""

    url: str
    backend: OpenAIBackend
    in_flight: int = 0
    healthy: bool = False
    last_error: str = ""


class UpstreamPool:
    """Healthy-least-loaded upstream choice over one shared connection pool.

    Args:
        urls: upstream base URLs.
        make_backend: builds the :class:`OpenAIBackend` of one URL on the shared client.
        client: the shared ``httpx.AsyncClient`` (closed by :meth:`close`).
        health_interval_s: seconds between health checks.
        on_change: called after any upstream's state changed (metrics).

    """

    def __init__(
        self, urls: list[str], make_backend: Callable[[str, httpx.AsyncClient], OpenAIBackend],
        client: httpx.AsyncClient, health_interval_s: float = 5.0,
        on_change: Callable[[Upstream], None] | None = None,
    ) -> None:
        if not urls:
            raise ValueError("UpstreamPool needs at least one upstream URL.")
        self.client = client
        self.upstreams = [Upstream(url, make_backend(url, client)) for url in urls]
        self.health_interval_s = health_interval_s
        self._on_change = on_change or (lambda up: None)
        self._task: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Check every upstream once, then keep checking in the background."""
        await self.check_all()
        self._task = asyncio.create_task(self._health_loop())

    async def close(self) -> None:
        """Stop health checks and close the shared client."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.aclose()

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval_s)
            await self.check_all()

    async def check_all(self) -> None:
        """Health-check every upstream concurrently."""
        await asyncio.gather(*(self.check(up) for up in self.upstreams))

    async def check(self, up: Upstream) -> bool:
        """``GET /v1/models`` on ``up``: up when it answers and serves the model; learns the context."""
        backend = up.backend
        try:
            resp = await self.client.get(f"{up.url}/v1/models", timeout=min(10.0, backend.timeout_s))
            ok, why = resp.status_code == 200, f"HTTP {resp.status_code}"
            if ok:
                ids = [c.get("id") for c in resp.json().get("data", []) if isinstance(c, dict)]
                ok, why = backend.model in ids, f"serves {ids}, not {backend.model!r}"
                card = next(c for c in resp.json()["data"] if c.get("id") == backend.model) if ok else {}
                length = card.get("max_model_len")
                if ok and backend.context_length is None and isinstance(length, int) and length > 0:
                    backend.set_context_length(length)
        except (httpx.HTTPError, ValueError, AttributeError, TypeError) as exc:
            ok, why = False, f"{type(exc).__name__}: {exc}"
        self._set(up, ok, "" if ok else why)
        return ok

    def _set(self, up: Upstream, healthy: bool, error: str) -> None:
        if up.healthy and not healthy:
            log.warning("upstream %s is down: %s", up.url, error)
        up.healthy, up.last_error = healthy, error
        self._on_change(up)

    def mark_down(self, up: Upstream, error: BaseException) -> None:
        """Take ``up`` out of rotation until a health check finds it up."""
        self._set(up, False, f"{type(error).__name__}: {error}"[:300])

    # ---------------------------------------------------------------- choice
    @property
    def context_length(self) -> int | None:
        """The model context, from the first upstream that reported it."""
        return next((u.backend.context_length for u in self.upstreams if u.backend.context_length), None)

    def pick(self, exclude: set[int] | frozenset[int] = frozenset()) -> Upstream:
        """The healthy upstream with the fewest requests in flight (not in ``exclude``, by ``id``).

        Raises:
            NoUpstream: none is healthy.

        """
        live = [u for u in self.upstreams if u.healthy and id(u) not in exclude]
        if not live:
            states = "; ".join(f"{u.url}: {u.last_error or 'down'}" for u in self.upstreams)
            raise NoUpstream(f"No healthy upstream to serve the request ({states}). Start one or fix --upstream.")
        return min(live, key=lambda u: u.in_flight)

    @contextlib.asynccontextmanager
    async def lease(self, up: Upstream) -> AsyncIterator[Upstream]:
        """Count a request in flight on ``up`` while the block runs."""
        up.in_flight += 1
        self._on_change(up)
        try:
            yield up
        finally:
            up.in_flight -= 1
            self._on_change(up)

    def status(self) -> list[dict[str, Any]]:
        """Per-upstream state for ``/health``."""
        return [{"url": u.url, "healthy": u.healthy, "in_flight": u.in_flight, "error": u.last_error or None}
                for u in self.upstreams]

