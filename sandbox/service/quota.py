"""Per-key quotas of the reward service: concurrent requests and queued submissions.

:class:`QuotaGate` counts, for every key id (:mod:`sandbox.service.auth`; ``anonymous`` when
authentication is off), the requests being served and the submissions admitted and not yet
judged. A caller over either quota gets 429 with ``Retry-After`` at once, while the other keys
keep their share of the judge threads: one runaway client cannot fill the service's queue.
A single batch larger than the submissions quota gets 413 (the client splits it in halves).

Series (labelled by key id, never by key): ``er_sandbox_key_requests_in_flight``,
``er_sandbox_key_submissions_queued``, ``er_sandbox_quota_rejections_total{key_id, quota}``.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from contextlib import contextmanager
from typing import Any, Callable, Iterator

__all__ = ["QuotaGate", "QuotaExceeded", "QuotaMiddleware", "UNMETERED_PATHS"]

#: routes outside the request quota (probes and scrapes)
UNMETERED_PATHS = ("/health", "/metrics")


class QuotaExceeded(RuntimeError):
    """A key is over one of its quotas: HTTP 429 (or 413 for a batch larger than the quota itself).

    Attributes:
        quota: ``requests`` or ``submissions``.
        too_large: the request alone exceeds the quota (retrying cannot help; split it).
        retry_after_s: the ``Retry-After`` to send.

    """

    def __init__(self, message: str, quota: str, retry_after_s: float, too_large: bool = False) -> None:
        super().__init__(message)
        self.quota, self.retry_after_s, self.too_large = quota, retry_after_s, too_large


class QuotaGate:
    """Counts requests in flight and queued submissions per key id.

    Args:
        max_requests: requests one key may have in flight.
        max_submissions: submissions one key may have admitted and not yet judged.
        retry_after_s: the ``Retry-After`` of a 429.
        registry: a Prometheus registry for the per-key series (optional).

    Raises:
        ValueError: a quota below 1 (naming the setting).

    """

    def __init__(self, max_requests: int, max_submissions: int, *, retry_after_s: float = 1.0,
                 registry: Any = None) -> None:
        for name, value in (("quota_requests", max_requests), ("quota_submissions", max_submissions)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} would refuse every request; set it to at least 1 "
                                 f"(ER_SANDBOX_{name.upper()}, --{name.replace('_', '-')})")
        self.max_requests, self.max_submissions, self.retry_after_s = max_requests, max_submissions, retry_after_s
        self._lock = threading.Lock()
        self._requests: dict[str, int] = defaultdict(int)
        self._submissions: dict[str, int] = defaultdict(int)
        self._metrics: tuple[Any, Any, Any] | None = None
        if registry is not None:
            from prometheus_client import Counter, Gauge

            self._metrics = (
                Gauge("er_sandbox_key_requests_in_flight", "Requests in flight by key id.", ["key_id"],
                      registry=registry),
                Gauge("er_sandbox_key_submissions_queued", "Submissions admitted and not yet judged, by key id.",
                      ["key_id"], registry=registry),
                Counter("er_sandbox_quota_rejections", "Requests refused for a quota (429/413), by key id and quota.",
                        ["key_id", "quota"], registry=registry))

    def in_flight(self, key_id: str) -> tuple[int, int]:
        """``(requests in flight, submissions queued)`` of ``key_id``."""
        with self._lock:
            return self._requests.get(key_id, 0), self._submissions.get(key_id, 0)

    def _publish(self, key_id: str) -> None:
        if self._metrics is not None:
            self._metrics[0].labels(key_id).set(self._requests.get(key_id, 0))
            self._metrics[1].labels(key_id).set(self._submissions.get(key_id, 0))

    def _reject(self, key_id: str, quota: str) -> None:
        if self._metrics is not None:
            self._metrics[2].labels(key_id, quota).inc()

    @contextmanager
    def request(self, key_id: str) -> Iterator[None]:
        """Hold one request slot of ``key_id`` for the body of the ``with``.

        Raises:
            QuotaExceeded: ``max_requests`` already in flight.

        """
        with self._lock:
            if self._requests[key_id] >= self.max_requests:
                self._reject(key_id, "requests")
                raise QuotaExceeded(f"key {key_id!r} has {self._requests[key_id]} requests in flight (quota_requests="
                                    f"{self.max_requests}); wait for them or retry after {self.retry_after_s:g} s",
                                    "requests", self.retry_after_s)
            self._requests[key_id] += 1
            self._publish(key_id)
        try:
            yield
        finally:
            with self._lock:
                self._requests[key_id] -= 1
                self._publish(key_id)

    @contextmanager
    def submissions(self, key_id: str, n: int) -> Iterator[None]:
        """Hold ``n`` queued-submission slots of ``key_id`` for the body of the ``with``.

        Raises:
            QuotaExceeded: over ``max_submissions`` (``too_large`` when ``n`` alone is over it).

        """
        with self._lock:
            if n > self.max_submissions:
                self._reject(key_id, "submissions")
                raise QuotaExceeded(f"a batch of {n} submissions is over quota_submissions={self.max_submissions} "
                                    "per key; send smaller batches", "submissions", self.retry_after_s,
                                    too_large=True)
            if self._submissions[key_id] + n > self.max_submissions:
                self._reject(key_id, "submissions")
                raise QuotaExceeded(f"key {key_id!r} has {self._submissions[key_id]} submissions queued "
                                    f"(quota_submissions={self.max_submissions}); retry after "
                                    f"{self.retry_after_s:g} s", "submissions", self.retry_after_s)
            self._submissions[key_id] += n
            self._publish(key_id)
        try:
            yield
        finally:
            with self._lock:
                self._submissions[key_id] -= n
                self._publish(key_id)


def quota_response_parts(exc: QuotaExceeded) -> tuple[int, dict[str, str], dict[str, str]]:
    """``(status, body, headers)`` of the answer to ``exc``: 413 for a too-large batch, else 429 + Retry-After."""
    if exc.too_large:
        return 413, {"error": "request_too_large", "detail": str(exc)}, {}
    return 429, {"error": "quota_exceeded", "detail": str(exc)}, {"Retry-After": f"{max(1, round(exc.retry_after_s))}"}


class QuotaMiddleware:
    """Pure-ASGI request quota per key id (after :class:`~sandbox.service.auth.BearerAuthMiddleware`).

    Args:
        app: the ASGI app.
        gate: the :class:`QuotaGate`.

    """

    def __init__(self, app: Any, gate: QuotaGate) -> None:
        self.app, self.gate = app, gate

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        """Hold one request slot of the caller's key around the app (or answer 429)."""
        if scope["type"] != "http" or scope["path"] in UNMETERED_PATHS:
            await self.app(scope, receive, send)
            return
        key_id = (scope.get("state") or {}).get("er_key_id", "anonymous")
        try:
            slot = self.gate.request(key_id)
            slot.__enter__()
        except QuotaExceeded as exc:
            status, body, headers = quota_response_parts(exc)
            raw = json.dumps(body).encode()
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode()),
                                    *((k.lower().encode(), v.encode()) for k, v in headers.items())]})
            await send({"type": "http.response.body", "body": raw})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            slot.__exit__(None, None, None)
