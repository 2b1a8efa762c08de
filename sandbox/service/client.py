"""Client of the reward service: sync and async, batched, bounded, retrying; or in-process.

:class:`SandboxClient` talks to ``er sandbox serve`` over HTTP, or, with
``base_url=None`` (or ``"local"``/``"inprocess"``), runs the same
:class:`~sandbox.service.service.SandboxService` in this process; both modes build the same
:mod:`sandbox.service.wire` requests and give the same results.

Retries: only transport failures are retried (connection refused/reset, timeouts, a
dropped connection, HTTP 502/503/504), with exponential backoff
``backoff_s * 2**attempt``. A 4xx is the caller's mistake and raises
:class:`SandboxRequestError` at once (except a 413 on a batch, which is split in halves
and sent again, so a client whose ``batch_size`` exceeds the server's limit still
works); a 500 raises :class:`SandboxServerError`. When the server stays unreachable,
:class:`SandboxUnavailable` names the URL and the last error.

Example:
    >>> with SandboxClient(None) as client:                      # doctest: +SKIP
    ...     client.judge({"code": "print(2 * int(input()))",
    ...                   "tests": {"kind": "stdio", "cases": [{"input": "2", "output": "4"}]}}).verdict
    <Verdict.AC: 1>

"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Mapping, Sequence

import httpx
from pydantic import ValidationError

from sandbox.core.verdicts import JudgeResult
from sandbox.mathcheck.verdict import MathVerdict
from sandbox.service.wire import (
    JudgeRequest,
    JudgeResponse,
    MathCheckRequest,
    MathCheckResponse,
    RequestTooLarge,
    RunRequest,
    RunResponse,
    math_payload,
    submission_payload,
)

__all__ = ["SandboxClient", "SandboxClientError", "SandboxUnavailable", "SandboxRequestError", "SandboxServerError",
           "LOCAL_URLS"]

LOCAL_URLS = (None, "", "local", "inprocess")
RETRY_STATUSES = (502, 503, 504)


class SandboxClientError(RuntimeError):
    """Base class: the service gave no result."""


class SandboxUnavailable(SandboxClientError):
    """The server could not be reached (or kept answering 502/503/504) after all retries."""


class SandboxRequestError(SandboxClientError):
    """The server rejected the request (4xx); retrying will not help.

    Attributes:
        status: HTTP status (422 also for requests rejected before sending).
        error: short error kind from the server (``invalid_request``, ``request_too_large``...).
        detail: the reason.

    """

    def __init__(self, status: int, error: str, detail: str, url: str = "") -> None:
        super().__init__(f"{url or 'sandbox'} rejected the request ({status} {error}): {detail}")
        self.status, self.error, self.detail = status, error, detail


class SandboxServerError(SandboxClientError):
    """The server failed on a valid request (HTTP 500): the core is broken."""



def _is_splittable(exc: SandboxRequestError, items: list[Any]) -> bool:
    """A 413 (over the server's batch or body limit) on a batch of more than one item."""
    return exc.status == 413 and len(items) > 1


def _split_on_413(send: Any, items: list[Any]) -> list[Any]:
    """``send(items)``; when the server answers 413 for a batch, send its halves instead."""
    try:
        return send(items)
    except SandboxRequestError as exc:
        if not _is_splittable(exc, items):
            raise
    half = len(items) // 2
    return _split_on_413(send, items[:half]) + _split_on_413(send, items[half:])


async def _asplit_on_413(send: Any, items: list[Any]) -> list[Any]:
    """Async :func:`_split_on_413` (the halves are sent concurrently)."""
    try:
        return await send(items)
    except SandboxRequestError as exc:
        if not _is_splittable(exc, items):
            raise
    half = len(items) // 2
    left, right = await asyncio.gather(_asplit_on_413(send, items[:half]), _asplit_on_413(send, items[half:]))
    return left + right


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)] or [[]]


def _build(model: type, payload: dict[str, Any]) -> Any:
    """Validate a request client-side (same rules as the server): 422-style error on failure."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        parts = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:10]]
        raise SandboxRequestError(422, "invalid_request", "; ".join(parts)) from None


def _reply(model: type, body: dict[str, Any]) -> Any:
    """Parse a 2xx reply body; a malformed one is a server failure, not the caller's."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise SandboxServerError(f"malformed {model.__name__} from the server: {exc}; body: {body!r:.300}") from None


class SandboxClient:
    """Judge code and check math answers, over HTTP or in-process.

    Args:
        base_url: server URL (``http://127.0.0.1:8000``), or ``None``/``"local"``/``"inprocess"`` to run
            the judge and math checker in this process.
        timeout_s: per-request timeout (judging a batch can take long; size it to the batch).
        max_concurrency: requests in flight at once (per sync client, and per event loop for async).
        max_retries: retries after a transport failure (0: try once).
        backoff_s: first retry delay; doubles on each retry.
        batch_size: submissions per ``/judge`` request (bigger batches are split).
        math_batch_size: items per ``/math/check`` request.
        connect_timeout_s: TCP connect timeout.
        service: in-process mode: a prepared :class:`~sandbox.service.service.SandboxService`.
        service_config: in-process mode: config for the service built on first use.

    Raises:
        ValueError: a non-positive setting, or a URL without ``http://``/``https://``.

    """

    def __init__(self, base_url: str | None = None, *, timeout_s: float = 600.0, max_concurrency: int = 8,
                 max_retries: int = 3, backoff_s: float = 0.5, batch_size: int = 64, math_batch_size: int = 1024,
                 connect_timeout_s: float = 5.0, service: Any = None, service_config: Any = None) -> None:
        if timeout_s <= 0 or max_concurrency < 1 or max_retries < 0 or backoff_s < 0 or batch_size < 1:
            raise ValueError(f"bad client settings: timeout_s={timeout_s}, max_concurrency={max_concurrency}, "
                             f"max_retries={max_retries}, backoff_s={backoff_s}, batch_size={batch_size}")
        self.local = base_url in LOCAL_URLS
        if not self.local and not str(base_url).startswith(("http://", "https://")):
            raise ValueError(f"base_url={base_url!r} must start with http:// or https:// (or be None for in-process)")
        self.base_url = None if self.local else str(base_url).rstrip("/")
        self.timeout = httpx.Timeout(timeout_s, connect=min(connect_timeout_s, timeout_s))
        self.max_concurrency, self.max_retries, self.backoff_s = max_concurrency, max_retries, backoff_s
        self.batch_size, self.math_batch_size = batch_size, math_batch_size
        self._service, self._service_config = service, service_config
        self._owns_service = service is None
        self._lock = threading.Lock()
        self._gate = threading.BoundedSemaphore(max_concurrency)
        self._http: httpx.Client | None = None
        self._async: dict[int, tuple[httpx.AsyncClient, asyncio.Semaphore]] = {}

    def __repr__(self) -> str:
        return f"SandboxClient({self.base_url or 'in-process'!s})"

    # ------------------------------------------------------------------ plumbing
    @property
    def service(self) -> Any:
        """The in-process service (local mode only; built on first use)."""
        with self._lock:
            if self._service is None:
                from sandbox.service.service import SandboxService

                self._service = SandboxService(self._service_config)
            return self._service

    def _local_call(self, fn: Any, req: Any) -> Any:
        from sandbox.service.service import InvalidRequest, Overloaded, ServiceError

        try:
            return fn(req)
        except RequestTooLarge as exc:
            raise SandboxRequestError(413, "request_too_large", str(exc)) from None
        except InvalidRequest as exc:
            raise SandboxRequestError(422, "invalid_request", str(exc)) from None
        except (Overloaded, ServiceError) as exc:
            raise SandboxServerError(f"in-process sandbox failed: {exc}") from exc

    async def _alocal_call(self, fn: Any, req: Any) -> Any:
        from sandbox.service.service import InvalidRequest, Overloaded, ServiceError

        try:
            return await fn(req)
        except RequestTooLarge as exc:
            raise SandboxRequestError(413, "request_too_large", str(exc)) from None
        except InvalidRequest as exc:
            raise SandboxRequestError(422, "invalid_request", str(exc)) from None
        except (Overloaded, ServiceError) as exc:
            raise SandboxServerError(f"in-process sandbox failed: {exc}") from exc

    def _decode(self, resp: httpx.Response, url: str) -> dict[str, Any]:
        try:
            body = resp.json()
        except ValueError:
            body = {"error": "not_json", "detail": resp.text[:300]}
        if not isinstance(body, dict):
            body = {"error": "not_a_json_object", "detail": str(body)[:300]}
        if resp.is_success or (url.endswith("/health") and resp.status_code == 503 and "ok" in body):
            return body
        error, detail = str(body.get("error", "error")), str(body.get("detail", body))
        if 400 <= resp.status_code < 500:
            raise SandboxRequestError(resp.status_code, error, detail, url)
        raise SandboxServerError(f"{url} failed ({resp.status_code} {error}): {detail}")

    def _unavailable(self, url: str, attempts: int, last: Any) -> SandboxUnavailable:
        why = f"HTTP {last.status_code}: {last.text[:200]}" if isinstance(last, httpx.Response) else (
            f"{type(last).__name__}: {last}")
        return SandboxUnavailable(f"sandbox server at {url} unavailable after {attempts} attempt(s) ({why}); "
                                  f"is `er sandbox serve` running there?")

    def _final(self, resp: httpx.Response, path: str) -> bool:
        """Whether ``resp`` ends the retry loop (an unhealthy /health 503 is an answer, not a failure)."""
        return resp.status_code not in RETRY_STATUSES or (path == "/health" and resp.status_code == 503)

    def _request(self, method: str, path: str, payload: dict | None = None) -> dict[str, Any]:
        with self._lock:
            if self._http is None:
                self._http = httpx.Client(timeout=self.timeout)
        url = f"{self.base_url}{path}"
        last: Any = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                with self._gate:
                    resp = self._http.request(method, url, json=payload)
            except httpx.TransportError as exc:
                last = exc
                continue
            if not self._final(resp, path):
                last = resp
                continue
            return self._decode(resp, url)
        raise self._unavailable(url, self.max_retries + 1, last)

    def _aclient(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        key = id(loop)
        if key not in self._async:  # one httpx pool + gate per event loop
            self._async = {k: v for k, v in self._async.items() if k == key}
            self._async[key] = (httpx.AsyncClient(timeout=self.timeout), asyncio.Semaphore(self.max_concurrency))
        return self._async[key]

    async def _arequest(self, method: str, path: str, payload: dict | None = None) -> dict[str, Any]:
        client, gate = self._aclient()
        url = f"{self.base_url}{path}"
        last: Any = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                async with gate:
                    resp = await client.request(method, url, json=payload)
            except httpx.TransportError as exc:
                last = exc
                continue
            if not self._final(resp, path):
                last = resp
                continue
            return self._decode(resp, url)
        raise self._unavailable(url, self.max_retries + 1, last)

    def _map(self, fn: Any, chunks: list[list]) -> list:
        if len(chunks) == 1:
            return [fn(chunks[0])]
        with ThreadPoolExecutor(min(self.max_concurrency, len(chunks))) as pool:
            return list(pool.map(fn, chunks))

    # ------------------------------------------------------------------ judge
    def _judge_request(self, subs: Sequence[Any], options: dict[str, Any]) -> JudgeRequest:
        payload = {"submissions": [submission_payload(s) for s in subs], **options}
        return _build(JudgeRequest, {k: v for k, v in payload.items() if v is not None})

    def _judge_chunk(self, subs: list[Any], options: dict[str, Any]) -> list[JudgeResult]:
        def send(part: list[Any]) -> list[JudgeResult]:
            req = self._judge_request(part, options)
            if self.local:
                return self._local_call(self.service.judge, req).to_core()
            return _reply(JudgeResponse, self._request("POST", "/judge", req.wire())).to_core()

        return _split_on_413(send, subs)

    def judge(self, submission: Any, **options: Any) -> JudgeResult:
        """Judge one submission.

        Args:
            submission: a :class:`sandbox.core.judge.Submission`, or a mapping with ``code`` or
                ``completion``, ``tests`` (the spec dict) and optional ``language``.
            **options: ``limits`` (dict of ``cpu_time_limit_s``, ``wall_time_limit_s``,
                ``memory_limit_bytes``, ``output_limit_bytes``), ``compare_mode``, ``stop_on_first_failure``.

        Returns:
            The :class:`~sandbox.core.verdicts.JudgeResult` (``INTERNAL_ERROR`` if the sandbox failed on it).

        Raises:
            SandboxRequestError: invalid submission or options (4xx).
            SandboxServerError: the service failed (500).
            SandboxUnavailable: the server is unreachable after retries.

        """
        return self._judge_chunk([submission], options)[0]

    def judge_batch(self, submissions: Iterable[Any], **options: Any) -> list[JudgeResult]:
        """Judge many submissions (split into ``batch_size`` requests, ``max_concurrency`` in flight).

        Args:
            submissions: as for :meth:`judge`.
            **options: as for :meth:`judge`, applied to all.

        Returns:
            One result per submission, in input order.

        Raises:
            SandboxRequestError, SandboxServerError, SandboxUnavailable: as for :meth:`judge`.

        """
        subs = list(submissions)
        if not subs:
            return []
        parts = self._map(lambda c: self._judge_chunk(c, options), _chunks(subs, self.batch_size))
        return [r for part in parts for r in part]

    async def _ajudge_chunk(self, subs: list[Any], options: dict[str, Any]) -> list[JudgeResult]:
        async def send(part: list[Any]) -> list[JudgeResult]:
            req = self._judge_request(part, options)
            if self.local:
                return (await self._alocal_call(self.service.ajudge, req)).to_core()
            return _reply(JudgeResponse, await self._arequest("POST", "/judge", req.wire())).to_core()

        return await _asplit_on_413(send, subs)

    async def ajudge(self, submission: Any, **options: Any) -> JudgeResult:
        """Async :meth:`judge`."""
        return (await self._ajudge_chunk([submission], options))[0]

    async def ajudge_batch(self, submissions: Iterable[Any], **options: Any) -> list[JudgeResult]:
        """Async :meth:`judge_batch` (chunks run concurrently, bounded by ``max_concurrency``)."""
        subs = list(submissions)
        if not subs:
            return []
        parts = await asyncio.gather(*(self._ajudge_chunk(c, options) for c in _chunks(subs, self.batch_size)))
        return [r for part in parts for r in part]

    # ------------------------------------------------------------------ run
    def _run_request(self, source: str, stdin: str, language: str, limits: Mapping | None) -> RunRequest:
        payload = {"source": source, "stdin": stdin, "language": language, "limits": dict(limits) if limits else None}
        return _build(RunRequest, {k: v for k, v in payload.items() if v is not None})

    def run(self, source: str, stdin: str = "", *, language: str = "python",
            limits: Mapping[str, Any] | None = None) -> RunResponse:
        """Run one program on one stdin; nothing is compared.

        Args:
            source: the program.
            stdin: its standard input.
            language: ``"python"`` or ``"cpp"``.
            limits: optional limit overrides (as for :meth:`judge`).

        Returns:
            The :class:`~sandbox.service.wire.RunResponse` (runner status and the TestRun record).

        Raises:
            SandboxRequestError, SandboxServerError, SandboxUnavailable: as for :meth:`judge`.

        """
        req = self._run_request(source, stdin, language, limits)
        if self.local:
            return self._local_call(self.service.run, req)
        return _reply(RunResponse, self._request("POST", "/run", req.wire()))

    async def arun(self, source: str, stdin: str = "", *, language: str = "python",
                   limits: Mapping[str, Any] | None = None) -> RunResponse:
        """Async :meth:`run`."""
        req = self._run_request(source, stdin, language, limits)
        if self.local:
            return await self._alocal_call(self.service.arun, req)
        return _reply(RunResponse, await self._arequest("POST", "/run", req.wire()))

    # ------------------------------------------------------------------ math
    def _math_chunk(self, items: list[Any]) -> list[MathVerdict]:
        def send(part: list[Any]) -> list[MathVerdict]:
            req = _build(MathCheckRequest, {"items": [math_payload(i) for i in part]})
            if self.local:
                return self._local_call(self.service.check_math, req).to_core()
            return _reply(MathCheckResponse, self._request("POST", "/math/check", req.wire())).to_core()

        return _split_on_413(send, items)

    def check_math(self, gold: Any, completion: str | None = None, *, pred: str | None = None,
                   require: str = "any") -> MathVerdict:
        """Check one completion (or a bare answer ``pred``) against gold answer(s).

        Args:
            gold: a gold answer string or a list of them.
            completion: the full model output (the answer is extracted after ``</think>``).
            pred: instead of ``completion``, a bare predicted answer.
            require: ``"any"`` (one gold answer suffices) or ``"all"`` (multi-part).

        Returns:
            The :class:`~sandbox.mathcheck.MathVerdict` (``INTERNAL_ERROR`` if the checker failed).

        Raises:
            SandboxRequestError, SandboxServerError, SandboxUnavailable: as for :meth:`judge`.

        """
        return self._math_chunk([{"gold": gold, "completion": completion, "pred": pred, "require": require}])[0]

    def check_math_batch(self, items: Iterable[Any]) -> list[MathVerdict]:
        """Check many items, ``math_batch_size`` per request, ``max_concurrency`` in flight.

        Args:
            items: ``MathItem``s, mappings (``gold``, ``completion`` or ``pred``, ``require``)
                or ``(gold, completion)`` tuples.

        Returns:
            One :class:`~sandbox.mathcheck.MathVerdict` per item, in order.

        Raises:
            SandboxRequestError, SandboxServerError, SandboxUnavailable: as for :meth:`judge`.

        """
        todo = list(items)
        if not todo:
            return []
        parts = self._map(self._math_chunk, _chunks(todo, self.math_batch_size))
        return [v for part in parts for v in part]

    async def _amath_chunk(self, items: list[Any]) -> list[MathVerdict]:
        async def send(part: list[Any]) -> list[MathVerdict]:
            req = _build(MathCheckRequest, {"items": [math_payload(i) for i in part]})
            if self.local:
                return (await self._alocal_call(self.service.acheck_math, req)).to_core()
            return _reply(MathCheckResponse, await self._arequest("POST", "/math/check", req.wire())).to_core()

        return await _asplit_on_413(send, items)

    async def acheck_math(self, gold: Any, completion: str | None = None, *, pred: str | None = None,
                          require: str = "any") -> MathVerdict:
        """Async :meth:`check_math`."""
        return (await self._amath_chunk([{"gold": gold, "completion": completion, "pred": pred,
                                          "require": require}]))[0]

    async def acheck_math_batch(self, items: Iterable[Any]) -> list[MathVerdict]:
        """Async :meth:`check_math_batch`."""
        todo = list(items)
        if not todo:
            return []
        parts = await asyncio.gather(*(self._amath_chunk(c) for c in _chunks(todo, self.math_batch_size)))
        return [v for part in parts for v in part]

    # ------------------------------------------------------------------ health, lifetime
    def health(self) -> dict[str, Any]:
        """Fetch the service's health report (``{"ok": bool, "isolation": ..., "math": ...}``).

        An unhealthy server's 503 reply is returned as its report (``ok`` false), not raised.

        Raises:
            SandboxUnavailable: the server is unreachable after retries.

        """
        if self.local:
            return self.service.health()
        return self._request("GET", "/health")

    async def ahealth(self) -> dict[str, Any]:
        """Async :meth:`health`."""
        if self.local:
            return await asyncio.to_thread(self.service.health)
        return await self._arequest("GET", "/health")

    def close(self) -> None:
        """Close HTTP connections (and the in-process service if this client built it)."""
        if self._http is not None:
            self._http.close()
            self._http = None
        self._async.clear()  # async pools of other loops cannot be closed from here; they are dropped
        if self.local and self._owns_service and self._service is not None:
            self._service.close()
            self._service = None

    async def aclose(self) -> None:
        """Close the async connections of the running loop, then everything else."""
        entry = self._async.pop(id(asyncio.get_running_loop()), None)
        if entry is not None:
            await entry[0].aclose()
        self.close()

    def __enter__(self) -> "SandboxClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> "SandboxClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
