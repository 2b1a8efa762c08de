"""Client of the reward service: async (with blocking wrappers), batched, bounded, retrying; or in-process.

:class:`SandboxClient` talks to ``er sandbox serve`` over HTTP, or, with
``base_url=None`` (or ``"local"``/``"inprocess"``), runs the same
:class:`~sandbox.service.service.SandboxService` in this process; both modes build the same
:mod:`sandbox.service.wire` requests and give the same results.

The async methods are the implementation; each blocking method (``judge``, ``run``,
``check_math``, ``health`` and their batches) runs its async twin on a background event loop
(:mod:`sandbox.service.loop`), so sync and async callers share one code path, one HTTP
connection pool per loop and one ``max_concurrency`` gate per loop.

Authentication: the client sends ``Authorization: Bearer <key>`` with the key given as ``api_key``, else
``$ER_API_KEY``, else the file ``$ER_API_KEY_FILE`` (:func:`sandbox.service.auth.client_api_key`); the key
is never logged nor shown in ``repr``. A 401 raises :class:`SandboxRequestError` naming where the key comes
from. ``https://`` URLs are verified against the system CAs, or ``verify`` (a CA bundle file, or
``$SSL_CERT_FILE``, as httpx reads it).

Retries (tenacity): only transport failures are retried (connection refused/reset,
timeouts, a dropped connection, HTTP 429 (a per-key quota), 502/503/504, and a 500 whose body is not the
service's ``{"error", "detail"}`` JSON: a proxy in front, such as Ray Serve's, answering
for a replica that died), with exponential backoff ``backoff_s * 2**attempt``, or the
server's ``Retry-After`` when that is longer (capped at :data:`MAX_RETRY_AFTER_S`).
Judging is a pure function of the request, so a retried request whose first attempt did
run gives the caller the same single result; each request carries ``X-Request-ID`` (the
SHA-256 of its body), so the server recognises a repeated delivery and answers it without
scoring it again (:mod:`sandbox.service.idempotency`). A 4xx is the caller's mistake and raises
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
import hashlib
import json
import threading
from typing import Any, Iterable, Mapping, Sequence

import httpx
from pydantic import BaseModel, ValidationError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from sandbox.core.verdicts import JudgeResult
from sandbox.mathcheck.verdict import MathVerdict
from sandbox.service.auth import API_KEY_ENV, API_KEY_FILE_ENV, client_api_key
from sandbox.service.loop import background_loop, run_sync
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
           "LOCAL_URLS", "MAX_RETRY_AFTER_S", "API_KEY_ENV", "API_KEY_FILE_ENV"]

LOCAL_URLS = (None, "", "local", "inprocess")
RETRY_STATUSES = (429, 502, 503, 504)
#: the longest ``Retry-After`` the client honours (seconds)
MAX_RETRY_AFTER_S = 30.0


def _retry_after_s(resp: Any) -> float:
    """The ``Retry-After`` delay of a response in seconds (0 when absent or not a number of seconds)."""
    if not isinstance(resp, httpx.Response):
        return 0.0
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, float(resp.headers.get("retry-after", "0"))))
    except ValueError:  # an HTTP date: fall back to the client's own backoff
        return 0.0


def _from_a_proxy(resp: httpx.Response) -> bool:
    """A 500 that the service did not write (its error bodies are ``{"error", "detail"}`` JSON)."""
    if resp.status_code != 500:
        return False
    try:
        body = resp.json()
    except ValueError:
        return True
    return not (isinstance(body, dict) and "error" in body and "detail" in body)


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


class _Retry(Exception):
    """One attempt failed in a way worth retrying (transport error, 502/503/504); ``last`` is why."""

    def __init__(self, last: Any) -> None:
        super().__init__(str(last))
        self.last = last



def _is_splittable(exc: SandboxRequestError, items: list[Any]) -> bool:
    """A 413 (over the server's batch or body limit) on a batch of more than one item."""
    return exc.status == 413 and len(items) > 1


async def _split_on_413(send: Any, items: list[Any]) -> list[Any]:
    """``await send(items)``; when the server answers 413 for a batch, send its halves (concurrently) instead."""
    try:
        return await send(items)
    except SandboxRequestError as exc:
        if not _is_splittable(exc, items):
            raise
    half = len(items) // 2
    left, right = await asyncio.gather(_split_on_413(send, items[:half]), _split_on_413(send, items[half:]))
    return left + right


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)] or [[]]


def _build(model: type[BaseModel], payload: dict[str, Any]) -> Any:
    """Validate a request client-side (same rules as the server): 422-style error on failure."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        parts = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:10]]
        raise SandboxRequestError(422, "invalid_request", "; ".join(parts)) from None


def _reply(model: type[BaseModel], body: dict[str, Any]) -> Any:
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
        api_key: the bearer key to send (default: ``$ER_API_KEY``, else the file ``$ER_API_KEY_FILE``).
        verify: TLS verification of ``https://`` URLs: True (system CAs), a CA bundle path, or False.

    Raises:
        ValueError: a non-positive setting, or a URL without ``http://``/``https://``.
        KeyFileError: ``$ER_API_KEY_FILE`` names a missing, readable-by-others or empty file.

    """

    def __init__(self, base_url: str | None = None, *, timeout_s: float = 600.0, max_concurrency: int = 8,
                 max_retries: int = 3, backoff_s: float = 0.5, batch_size: int = 64, math_batch_size: int = 1024,
                 connect_timeout_s: float = 5.0, service: Any = None, service_config: Any = None,
                 api_key: str | None = None, verify: bool | str = True) -> None:
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
        self._async: dict[int, tuple[httpx.AsyncClient, asyncio.Semaphore]] = {}
        self._verify = verify
        # the key stays in this one private attribute and in the pools' default headers; never in a message
        self._headers: dict[str, str] = {}
        key = None if self.local else client_api_key(api_key)
        if key:
            self._headers["Authorization"] = f"Bearer {key}"

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

    async def _local_call(self, fn: Any, req: Any) -> Any:
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
        if resp.status_code == 401:
            sent = "a key was sent" if self._headers else f"no key was sent: set ${API_KEY_ENV} or ${API_KEY_FILE_ENV}"
            detail = f"{detail} ({sent})"
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
        if path == "/health" and resp.status_code == 503:
            return True
        return resp.status_code not in RETRY_STATUSES and not _from_a_proxy(resp)

    def _wait(self) -> Any:
        """Tenacity wait: exponential backoff, or the last answer's ``Retry-After`` when longer."""
        exponential = wait_exponential(multiplier=self.backoff_s, min=0)

        def wait(state: Any) -> float:
            failure = state.outcome.exception() if state.outcome is not None else None
            return max(exponential(state), _retry_after_s(getattr(failure, "last", None)))

        return wait

    def _aclient(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        key = id(loop)
        if key not in self._async:  # one httpx pool + gate per event loop
            self._async = {k: v for k, v in self._async.items() if k == key}
            self._async[key] = (httpx.AsyncClient(timeout=self.timeout, headers=self._headers, verify=self._verify),
                                asyncio.Semaphore(self.max_concurrency))
        return self._async[key]

    async def _request(self, method: str, path: str, payload: dict | None = None) -> dict[str, Any]:
        client, gate = self._aclient()
        url = f"{self.base_url}{path}"
        body, headers = None, None
        if payload is not None:  # one id for every delivery of this body (sandbox.service.idempotency)
            body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
            headers = {"Content-Type": "application/json", "X-Request-ID": hashlib.sha256(body).hexdigest()}
        retrying = AsyncRetrying(stop=stop_after_attempt(self.max_retries + 1),
                                 wait=self._wait(),
                                 retry=retry_if_exception_type(_Retry), reraise=True)
        try:
            async for attempt in retrying:
                with attempt:
                    try:
                        async with gate:
                            resp = await client.request(method, url, content=body, headers=headers)
                    except httpx.TransportError as exc:
                        raise _Retry(exc) from exc
                    if not self._final(resp, path):
                        raise _Retry(resp)
        except _Retry as exc:
            if isinstance(exc.last, httpx.Response) and exc.last.status_code == 429:  # still over the key's quota
                return self._decode(exc.last, url)
            raise self._unavailable(url, self.max_retries + 1, exc.last) from None
        return self._decode(resp, url)

    # ------------------------------------------------------------------ judge
    def _judge_request(self, subs: Sequence[Any], options: dict[str, Any]) -> JudgeRequest:
        payload = {"submissions": [submission_payload(s) for s in subs], **options}
        return _build(JudgeRequest, {k: v for k, v in payload.items() if v is not None})

    async def _judge_chunk(self, subs: list[Any], options: dict[str, Any]) -> list[JudgeResult]:
        async def send(part: list[Any]) -> list[JudgeResult]:
            req = self._judge_request(part, options)
            if self.local:
                return (await self._local_call(self.service.ajudge, req)).to_core()
            return _reply(JudgeResponse, await self._request("POST", "/judge", req.wire())).to_core()

        return await _split_on_413(send, subs)

    async def ajudge(self, submission: Any, **options: Any) -> JudgeResult:
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
        return (await self._judge_chunk([submission], options))[0]

    async def ajudge_batch(self, submissions: Iterable[Any], **options: Any) -> list[JudgeResult]:
        """Judge many submissions (split into ``batch_size`` requests, ``max_concurrency`` in flight).

        Args:
            submissions: as for :meth:`ajudge`.
            **options: as for :meth:`ajudge`, applied to all.

        Returns:
            One result per submission, in input order.

        Raises:
            SandboxRequestError, SandboxServerError, SandboxUnavailable: as for :meth:`ajudge`.

        """
        subs = list(submissions)
        if not subs:
            return []
        parts = await asyncio.gather(*(self._judge_chunk(c, options) for c in _chunks(subs, self.batch_size)))
        return [r for part in parts for r in part]

    def judge(self, submission: Any, **options: Any) -> JudgeResult:
        """Blocking :meth:`ajudge` (same arguments, result and errors)."""
        return run_sync(self.ajudge(submission, **options))

    def judge_batch(self, submissions: Iterable[Any], **options: Any) -> list[JudgeResult]:
        """Blocking :meth:`ajudge_batch` (same arguments, result and errors)."""
        return run_sync(self.ajudge_batch(submissions, **options))

    # ------------------------------------------------------------------ run
    def _run_request(self, source: str, stdin: str, language: str, limits: Mapping | None) -> RunRequest:
        payload = {"source": source, "stdin": stdin, "language": language, "limits": dict(limits) if limits else None}
        return _build(RunRequest, {k: v for k, v in payload.items() if v is not None})

    async def arun(self, source: str, stdin: str = "", *, language: str = "python",
                   limits: Mapping[str, Any] | None = None) -> RunResponse:
        """Run one program on one stdin; nothing is compared.

        Args:
            source: the program.
            stdin: its standard input.
            language: ``"python"`` or ``"cpp"``.
            limits: optional limit overrides (as for :meth:`ajudge`).

        Returns:
            The :class:`~sandbox.service.wire.RunResponse` (runner status and the TestRun record).

        Raises:
            SandboxRequestError, SandboxServerError, SandboxUnavailable: as for :meth:`ajudge`.

        """
        req = self._run_request(source, stdin, language, limits)
        if self.local:
            return await self._local_call(self.service.arun, req)
        return _reply(RunResponse, await self._request("POST", "/run", req.wire()))

    def run(self, source: str, stdin: str = "", *, language: str = "python",
            limits: Mapping[str, Any] | None = None) -> RunResponse:
        """Blocking :meth:`arun` (same arguments, result and errors)."""
        return run_sync(self.arun(source, stdin, language=language, limits=limits))

    # ------------------------------------------------------------------ math
    async def _math_chunk(self, items: list[Any]) -> list[MathVerdict]:
        async def send(part: list[Any]) -> list[MathVerdict]:
            req = _build(MathCheckRequest, {"items": [math_payload(i) for i in part]})
            if self.local:
                return (await self._local_call(self.service.acheck_math, req)).to_core()
            return _reply(MathCheckResponse, await self._request("POST", "/math/check", req.wire())).to_core()

        return await _split_on_413(send, items)

    async def acheck_math(self, gold: Any, completion: str | None = None, *, pred: str | None = None,
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
            SandboxRequestError, SandboxServerError, SandboxUnavailable: as for :meth:`ajudge`.

        """
        return (await self._math_chunk([{"gold": gold, "completion": completion, "pred": pred,
                                          "require": require}]))[0]

    async def acheck_math_batch(self, items: Iterable[Any]) -> list[MathVerdict]:
        """Check many items, ``math_batch_size`` per request, ``max_concurrency`` in flight.

        Args:
            items: ``MathItem``s, mappings (``gold``, ``completion`` or ``pred``, ``require``)
                or ``(gold, completion)`` tuples.

        Returns:
            One :class:`~sandbox.mathcheck.MathVerdict` per item, in order.

        Raises:
            SandboxRequestError, SandboxServerError, SandboxUnavailable: as for :meth:`ajudge`.

        """
        todo = list(items)
        if not todo:
            return []
        parts = await asyncio.gather(*(self._math_chunk(c) for c in _chunks(todo, self.math_batch_size)))
        return [v for part in parts for v in part]

    def check_math(self, gold: Any, completion: str | None = None, *, pred: str | None = None,
                   require: str = "any") -> MathVerdict:
        """Blocking :meth:`acheck_math` (same arguments, result and errors)."""
        return run_sync(self.acheck_math(gold, completion, pred=pred, require=require))

    def check_math_batch(self, items: Iterable[Any]) -> list[MathVerdict]:
        """Blocking :meth:`acheck_math_batch` (same arguments, result and errors)."""
        return run_sync(self.acheck_math_batch(items))

    # ------------------------------------------------------------------ health, lifetime
    async def ahealth(self) -> dict[str, Any]:
        """Fetch the service's health report (``{"ok": bool, "isolation": ..., "math": ...}``).

        An unhealthy server's 503 reply is returned as its report (``ok`` false), not raised.

        Raises:
            SandboxUnavailable: the server is unreachable after retries.

        """
        if self.local:
            return await asyncio.to_thread(self.service.health)
        return await self._request("GET", "/health")

    def health(self) -> dict[str, Any]:
        """Blocking :meth:`ahealth`."""
        return run_sync(self.ahealth())

    def close(self) -> None:
        """Close HTTP connections (and the in-process service if this client built it)."""
        loop = background_loop()
        entry = self._async.pop(id(loop), None)
        if entry is not None:  # the pool the blocking methods used
            run_sync(entry[0].aclose())
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
