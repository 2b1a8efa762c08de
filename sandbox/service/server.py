"""The reward service over HTTP: a thin FastAPI shell over :class:`~sandbox.service.service.SandboxService`.

Endpoints (OpenAPI schema at ``/openapi.json``, docs at ``/docs``):

====================  ===================================================================================
``POST /judge``       :class:`~sandbox.service.wire.JudgeRequest` -> :class:`~sandbox.service.wire.JudgeResponse`
``POST /run``         :class:`~sandbox.service.wire.RunRequest` -> :class:`~sandbox.service.wire.RunResponse`
``POST /math/check``  :class:`~sandbox.service.wire.MathCheckRequest` ->
                      :class:`~sandbox.service.wire.MathCheckResponse`
``GET /health``       200 with the isolation backend's health and a live math probe; 503 if either fails
``GET /metrics``      Prometheus text: requests by endpoint/status, verdicts, latency, in-flight, errors; plus
                      queue depth, jobs in flight, stage latency, worker restarts (:mod:`sandbox.service.metrics`)
====================  ===================================================================================

Status codes: 400 malformed JSON; 401 a missing or unknown API key (with ``WWW-Authenticate``);
413 body or batch/code/test count over a limit; 422 a well-formed request that cannot be judged
(wrong types, missing fields, bad test spec); 429 the caller's key is over a quota (with
``Retry-After``); 503 overloaded (retry); 500 the core failed. Every error body is
``{"error": kind, "detail": reason}``. Judging never runs on the event loop. A ``/judge`` or
``/math/check`` request whose ``X-Request-ID`` was already scored gets the first reply
(:mod:`sandbox.service.idempotency`).

Security (:mod:`sandbox.service.auth`, :mod:`sandbox.service.quota`): with ``api_key_file`` every
route but ``/health`` (and ``/metrics`` with ``metrics_open``) needs ``Authorization: Bearer <key>``;
without keys :func:`create_app` refuses a non-loopback ``host`` unless ``insecure_no_auth``. Each key id
has its own quotas of requests in flight and queued submissions. ``tls_certfile``/``tls_keyfile`` are
checked here (pair present, key private, key matching); ``er sandbox serve`` serves HTTPS with them
(with ``uvicorn --factory`` pass uvicorn's own ``--ssl-certfile``/``--ssl-keyfile`` too).

Routes of layers above the sandbox (e.g. OpenRLHF's remote-reward contract,
:mod:`er_integrations.openrlhf_reward`) are mounted with ``create_app(routes=[factory])`` or, for
:func:`app_from_env`, ``ER_EXTRA_ROUTES=module:factory[,module:factory]``; each factory takes the
app's :class:`SandboxService` and returns an ``APIRouter``. The sandbox imports none of them itself.

Run it with ``er sandbox serve`` or ``uvicorn --factory sandbox.service.server:app_from_env``.
Every :class:`ServerConfig` field has a mirroring environment variable
``ER_SANDBOX_<FIELD>`` (``ER_SANDBOX_PORT=8000``).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import time
from collections.abc import MutableMapping
from contextlib import asynccontextmanager
from typing import Any, Awaitable, Callable, Sequence

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from sandbox.service.auth import ANONYMOUS, BearerAuthMiddleware, KeyRing, check_bind, check_tls
from sandbox.service.config import ENV_PREFIX, ServerConfig
from sandbox.service.idempotency import HEADER, Replies
from sandbox.service.quota import QuotaExceeded, QuotaGate, QuotaMiddleware, quota_response_parts
from sandbox.service.service import InvalidRequest, Overloaded, SandboxService, ServiceError
from sandbox.service.wire import (
    ErrorResponse,
    JudgeRequest,
    JudgeResponse,
    MathCheckRequest,
    MathCheckResponse,
    RequestTooLarge,
    RunRequest,
    RunResponse,
)

__all__ = ["ServerConfig", "create_app", "security", "app_from_env", "ENV_PREFIX", "EXTRA_ROUTES_ENV", "RouteFactory"]

_log = logging.getLogger("sandbox.service.server")
ENDPOINTS = ("/judge", "/run", "/math/check", "/health", "/metrics")
#: ``module:factory`` list of extra routes :func:`app_from_env` mounts
EXTRA_ROUTES_ENV = "ER_EXTRA_ROUTES"
#: builds extra routes over the app's service (see the module docstring)
RouteFactory = Callable[[SandboxService], APIRouter]


class _Metrics:
    """The app's Prometheus collectors, in a registry of its own (several apps can coexist)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.requests = Counter("er_sandbox_requests_total", "HTTP requests by endpoint and status code.",
                                ["endpoint", "status"], registry=self.registry)
        self.verdicts = Counter("er_sandbox_verdicts_total", "Judge verdicts and math statuses returned.",
                                ["endpoint", "verdict"], registry=self.registry)
        self.latency = Histogram("er_sandbox_request_latency_seconds", "Request latency by endpoint.", ["endpoint"],
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300),
                                 registry=self.registry)
        self.in_flight = Gauge("er_sandbox_in_flight_requests", "Requests being served.", ["endpoint"],
                               registry=self.registry)
        self.internal_errors = Counter("er_sandbox_internal_errors_total",
                                       "Core failures: 5xx replies and INTERNAL_ERROR results.", ["endpoint"],
                                       registry=self.registry)
        self.duplicates = Counter("er_sandbox_duplicate_requests_total",
                                  "Requests whose X-Request-ID was already scored: answered with the first reply.",
                                  ["endpoint"], registry=self.registry)


class _GuardMiddleware:
    """Pure-ASGI middleware: rejects bodies over ``max_body_bytes`` (413) and records metrics."""

    def __init__(self, app: Any, max_body_bytes: int, metrics: _Metrics,
                 endpoints: Sequence[str] = ENDPOINTS) -> None:
        self.app, self.max_body_bytes, self.metrics = app, max_body_bytes, metrics
        self.endpoints = frozenset(endpoints)  # metric labels; any other path counts as "other"

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in self.endpoints else "other"
        status = {"code": 500}

        async def send_wrapper(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        self.metrics.in_flight.labels(endpoint).inc()
        start = time.perf_counter()
        try:
            body_receive = await self._buffer_body(scope, receive)
            if body_receive is None:
                await _error_response(413, "body_too_large", f"request body over max_body_bytes="
                                      f"{self.max_body_bytes} (server setting ER_SANDBOX_MAX_BODY_BYTES); "
                                      "send smaller batches")(scope, receive, send_wrapper)
            else:
                await self.app(scope, body_receive, send_wrapper)
        finally:
            self.metrics.in_flight.labels(endpoint).dec()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
            self.metrics.requests.labels(endpoint, str(status["code"])).inc()
            if status["code"] >= 500 and status["code"] != 503:
                self.metrics.internal_errors.labels(endpoint).inc()

    async def _buffer_body(self, scope: dict, receive: Callable) -> Callable | None:
        """Read the whole body (bounded); None when it is too large."""
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                return _replay([message], receive)
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body_bytes:
                return None
            if not message.get("more_body", False):
                break
        return _replay([{"type": "http.request", "body": b"".join(chunks), "more_body": False}], receive)


def _replay(messages: list[dict], upstream: Callable[[], Awaitable[dict]]) -> Callable[[], Awaitable[dict]]:
    """A ``receive`` that yields the buffered ``messages``, then defers to ``upstream`` (disconnects)."""
    queue = list(messages)

    async def receive() -> dict:
        if queue:
            return queue.pop(0)
        return await upstream()

    return receive


def _error_response(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorResponse(error=error, detail=detail).model_dump(), status_code=status, headers=headers)


def _validation_response(exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        e = next(e for e in errors if e.get("type") == "json_invalid")
        why = (e.get("ctx") or {}).get("error", e.get("msg", ""))
        return _error_response(400, "malformed_json", f"request body is not valid JSON: {why} at {e.get('loc')}")
    parts = []
    for e in errors[:20]:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        got = repr(e.get("input"))[:80]
        parts.append(f"{loc}: {e.get('msg')} (got {got})")
    return _error_response(422, "invalid_request", "; ".join(parts))


async def _serve(endpoint: str, metrics: _Metrics, call: Awaitable[Any], key: str) -> Any:
    """Await a service call, map its errors to HTTP replies and count its verdicts."""
    try:
        response = await call
    except RequestTooLarge as exc:
        return _error_response(413, "request_too_large", str(exc))
    except InvalidRequest as exc:
        return _error_response(422, "invalid_request", str(exc))
    except Overloaded as exc:
        return _error_response(503, "overloaded", str(exc), headers={"Retry-After": "1"})
    except ServiceError as exc:
        _log.error("%s failed: %s", endpoint, exc, exc_info=exc.__cause__ is not None)
        return _error_response(500, "internal_error", str(exc))
    except Exception as exc:  # a bug in the core: still a clean 5xx with the reason
        _log.exception("%s: unexpected error", endpoint)
        return _error_response(500, "internal_error", f"{type(exc).__name__}: {exc}")
    if isinstance(response, RunResponse):  # one record: the test run, or the compile error
        records = [response.test or {key: response.status}]
    else:
        records = response.results
    for result in records:
        verdict = str(result.get(key, "unknown"))
        metrics.verdicts.labels(endpoint, verdict).inc()
        if result.get("is_error"):
            metrics.internal_errors.labels(endpoint).inc()
    return response


def security(config: ServerConfig) -> KeyRing | None:
    """Check the security settings of ``config`` as a server start does.

    Returns:
        The key ring (None when authentication is off).

    Raises:
        ValueError: a bad key file (:class:`~sandbox.service.auth.KeyFileError`), a non-loopback host
            without keys, or bad TLS files; the message names the file or setting and the fix.

    """
    keys = KeyRing(config.api_key_file, config.key_reload_s) if config.api_key_file else None
    check_bind(config.host, keys, config.insecure_no_auth, key_flag="--api-key-file (ER_SANDBOX_API_KEY_FILE)",
               insecure_flag="--insecure-no-auth (ER_SANDBOX_INSECURE_NO_AUTH=1)")
    if config.tls:
        check_tls(config.tls_certfile, config.tls_keyfile)
    return keys


def create_app(config: ServerConfig | None = None, *, service: SandboxService | None = None,
               routes: Sequence[RouteFactory] = ()) -> FastAPI:
    """Build the FastAPI app.

    Args:
        config: server settings (default: :meth:`ServerConfig.from_env`).
        service: a prepared service (tests inject fakes); default: built from ``config``
            and closed when the app shuts down.
        routes: factories of extra routes, each called with the app's service.

    Returns:
        The app; ``app.state.service``, ``app.state.metrics``, ``app.state.keys`` and ``app.state.quota``
        expose the internals.

    Raises:
        ValueError: bad security settings (see :func:`security`).

    """
    config = config or ServerConfig.from_env()
    keys = security(config)  # before anything starts: a bad key file is an error at start
    owned = service is None
    svc = service or SandboxService(config)
    metrics = _Metrics(getattr(getattr(svc, "metrics", None), "registry", None))  # beside the service's own

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # start the backend and the math workers before serving; a failure shows in /health, not here
        await asyncio.to_thread(svc.health)
        yield
        if owned:
            await asyncio.to_thread(svc.close)

    app = FastAPI(title="Elastic Reasoning reward service", version="1", lifespan=lifespan,
                  description="Sandboxed code judge and math checker (see sandbox.service.server).")
    app.state.service, app.state.metrics, app.state.config = svc, metrics, config
    gate = QuotaGate(config.quota_requests, config.quota_submissions, registry=metrics.registry)
    app.state.keys, app.state.quota = keys, gate

    async def metered(request: Request, n: int, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``call`` holding ``n`` of the caller's queued-submission slots (429/413 when over)."""
        key_id = getattr(request.state, "er_key_id", ANONYMOUS)
        try:
            with gate.submissions(key_id, n):
                return await call()
        except QuotaExceeded as exc:
            status, body, headers = quota_response_parts(exc)
            return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # 404 unknown path, 405 wrong method...: the same {"error", "detail"} body as every other error
        kinds = {404: "not_found", 405: "method_not_allowed"}
        detail = f"{request.method} {request.url.path}: {exc.detail}"
        if exc.status_code == 404:
            detail += f"; endpoints: {', '.join(ENDPOINTS)} (schema at /openapi.json)"
        return _error_response(exc.status_code, kinds.get(exc.status_code, "http_error"), detail,
                               headers=dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_response(exc)

    errors: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse}
                                               for code in (400, 401, 413, 422, 429, 500, 503)}

    replies = Replies(lambda endpoint: metrics.duplicates.labels(endpoint).inc())

    @app.post("/judge", response_model=JudgeResponse, responses=errors, summary="Judge code against tests")
    async def judge(req: JudgeRequest, request: Request) -> Any:
        return await replies.once("/judge", request.headers.get(HEADER), lambda: metered(
            request, len(req.submissions) if req.submissions is not None else 1,
            lambda: _serve("/judge", metrics, svc.ajudge(req), "verdict")))

    @app.post("/run", response_model=RunResponse, responses=errors, summary="Run one program on one stdin")
    async def run(req: RunRequest, request: Request) -> Any:
        return await metered(request, 1, lambda: _serve("/run", metrics, svc.arun(req), "status"))

    @app.post("/math/check", response_model=MathCheckResponse, responses=errors, summary="Check math answers")
    async def math_check(req: MathCheckRequest, request: Request) -> Any:
        return await replies.once("/math/check", request.headers.get(HEADER),
                                  lambda: _serve("/math/check", metrics, svc.acheck_math(req), "status"))

    @app.get("/health", summary="Isolation backend and math checker health")
    async def health() -> JSONResponse:
        report = await asyncio.to_thread(svc.health)
        return JSONResponse(report, status_code=200 if report["ok"] else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    extra_paths: list[str] = []
    for factory in routes:
        router = factory(svc)
        app.include_router(router)
        extra_paths += [p for r in router.routes if isinstance(p := getattr(r, "path", None), str)]
    # outermost last: auth (no body is read for a caller without a key), then size guard + metrics, then quota
    app.add_middleware(QuotaMiddleware, gate=gate)
    app.add_middleware(_GuardMiddleware, max_body_bytes=config.max_body_bytes, metrics=metrics,
                       endpoints=(*ENDPOINTS, *extra_paths))
    app.add_middleware(BearerAuthMiddleware, keys=keys, metrics_open=config.metrics_open, registry=metrics.registry)
    return app


def route_factories(spec: str) -> list[RouteFactory]:
    """Import ``module:factory[,module:factory]`` (the value of ``ER_EXTRA_ROUTES``).

    Raises:
        ValueError: an entry is not ``module:factory`` or does not import.

    """
    out = []
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        module, _, name = entry.partition(":")
        try:
            out.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError, ValueError) as exc:
            raise ValueError(f"{EXTRA_ROUTES_ENV} entry {entry!r} does not import ({exc}); write module:factory, "
                             "e.g. er_integrations.openrlhf_reward:routes.") from exc
    return out


def app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory sandbox.service.server:app_from_env`` (config from ``ER_SANDBOX_*``)."""
    return create_app(ServerConfig.from_env(), routes=route_factories(os.environ.get(EXTRA_ROUTES_ENV, "")))
