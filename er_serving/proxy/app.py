"""FastAPI app of ``er proxy``: an OpenAI-compatible Elastic Reasoning endpoint over upstream servers.

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models``,
``GET /health`` (200 while an upstream is up, else 503; per-upstream state in the
body), ``GET /metrics`` (Prometheus). Each request is two upstream calls (thinking,
then solution) with token-id prompts, made by :class:`~er_env.backends.openai.OpenAIBackend`
on one upstream from :class:`~er_serving.proxy.pool.UpstreamPool`; see
:mod:`er_serving.proxy.budgets` for the budget fields, :mod:`er_serving.proxy.render` and
:mod:`er_serving.proxy.streaming` for the answers.

Errors have the OpenAI shape ``{"error": {"message", "type", "param", "code"}}``: 400 a
malformed body or a value out of range (the message names the field and the range),
401 a missing/unknown caller key, 404 an unknown model, 422 a model whose tokenizer
has no ``</think>``, 502 an upstream that refused or answered garbage, 503 no upstream
up. An upstream that fails before the request returned a token is retried on another.

Example:
    >>> from er_serving.proxy.app import create_app  # doctest: +SKIP
    >>> cfg = ProxyConfig(upstream="http://127.0.0.1:8000", model="m", tokenizer="/tmp/tiny-r1")  # doctest: +SKIP
    >>> app = create_app(cfg)  # doctest: +SKIP

"""

from __future__ import annotations

import contextlib
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from er_env.backends.base import BackendError, BackendUnavailable
from er_env.backends.openai import OpenAIBackend
from er_env.backends.two_phase import StreamPiece
from er_env.budget import Budget, BudgetedCompletion, BudgetError, TokenizerError
from er_env.tokens import load_tokenizer, special_tokens
from er_serving.proxy.budgets import resolve_budget, resolve_sampling
from er_serving.proxy.config import ProxyConfig
from er_serving.proxy.pool import NoUpstream, Upstream, UpstreamPool
from er_serving.proxy.render import chat_response, completion_response
from er_serving.proxy.streaming import sse, stream_events
from er_serving.proxy.wire import ApiError, ChatRequest, CompletionRequest, error_body

__all__ = ["Authenticator", "ProxyMetrics", "create_app"]

#: ``authorization header value (or None) -> caller id, or None to refuse with 401`` (sync or async).
#: The shape of the shared key mechanism's ``KeyRing.authenticate`` (:mod:`sandbox.service.auth`):
#: ``er proxy --api-key-file`` passes ``create_app(cfg, authenticate=KeyRing(paths).authenticate)``.
Authenticator = Callable[[str | None], "str | None | Awaitable[str | None]"]


class ProxyMetrics:
    """The proxy's Prometheus series, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("er_proxy_requests", "Requests answered", ["endpoint", "status"], registry=r)
        self.latency = Histogram("er_proxy_request_seconds", "Request time to the last byte", ["endpoint"],
                                 registry=r, buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600))
        self.tokens = Counter("er_proxy_completion_tokens", "Completion tokens returned", ["part"], registry=r)
        self.truncated = Counter("er_proxy_thinking_truncated", "Choices whose </think> was forced", registry=r)
        self.failovers = Counter("er_proxy_upstream_failovers", "Requests retried on another upstream", registry=r)
        self.in_flight = Gauge("er_proxy_upstream_in_flight", "Requests in flight", ["upstream"], registry=r)
        self.healthy = Gauge("er_proxy_upstream_healthy", "1 while the upstream is up", ["upstream"], registry=r)

    def upstream(self, up: Upstream) -> None:
        """Mirror one upstream's state."""
        self.in_flight.labels(up.url).set(up.in_flight)
        self.healthy.labels(up.url).set(1 if up.healthy else 0)

    def completed(self, rec: BudgetedCompletion) -> None:
        """Count one finished choice."""
        self.tokens.labels("solution").inc(rec.solution_tokens)
        self.tokens.labels("reasoning").inc(len(rec.completion_ids) - rec.solution_tokens)
        if rec.thinking_truncated:
            self.truncated.inc()


def _flatten(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages with OpenAI content parts (``[{"type": "text", ...}]``) joined into one string."""
    out = []
    for i, msg in enumerate(messages):
        content = msg.get("content")
        if isinstance(content, list):
            texts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
            if len(texts) != len(content):
                raise ApiError(400, f"messages[{i}].content holds non-text parts; er proxy takes text only.",
                               param=f"messages[{i}].content")
            msg = {**msg, "content": "".join(texts)}
        out.append(msg)
    return out


class _Proxy:
    """The request logic behind the routes (one per app)."""

    def __init__(self, cfg: ProxyConfig, tokenizer: Any, transport: httpx.AsyncBaseTransport | None) -> None:
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.metrics = ProxyMetrics()
        self.effort_table = cfg.effort_table
        self.tokenizer_error: str | None = None
        try:
            self.special = special_tokens(tokenizer)
        except TokenizerError as exc:
            self.tokenizer_error = f"Model {cfg.model!r} cannot be served with budgets: {exc}"
        limits = httpx.Limits(max_connections=cfg.max_connections, max_keepalive_connections=cfg.max_connections)
        client = httpx.AsyncClient(timeout=cfg.timeout_s, limits=limits, transport=transport)
        self.pool: UpstreamPool | None = None
        if self.tokenizer_error is None:
            self.pool = UpstreamPool(cfg.upstreams, self._backend, client, cfg.health_interval_s,
                                     on_change=self.metrics.upstream)

    def _backend(self, url: str, client: httpx.AsyncClient) -> OpenAIBackend:
        backend = OpenAIBackend(url, self.cfg.upstream_model or self.cfg.model, tokenizer=self.tokenizer,
                                max_retries=0, timeout_s=self.cfg.timeout_s, client=client,
                                max_concurrency=self.cfg.max_connections)
        if self.cfg.context_length is not None:
            backend.set_context_length(self.cfg.context_length)
        return backend

    # ------------------------------------------------------------- requests
    def _check(self, req: Any) -> UpstreamPool:
        if req.model is not None and req.model != self.cfg.model:
            raise ApiError(404, f"The model {req.model!r} does not exist; this proxy serves {self.cfg.model!r} "
                           "(GET /v1/models).", param="model", code="model_not_found")
        if self.tokenizer_error is not None or self.pool is None:
            raise ApiError(422, f"{self.tokenizer_error} Start er proxy with a reasoning model's --tokenizer.",
                           param="model")
        return self.pool

    def chat_prompt(self, req: ChatRequest) -> list[int]:
        """The chat template applied to ``req.messages`` (generation prompt included), as ids."""
        try:
            text = self.tokenizer.apply_chat_template(_flatten(req.messages), tokenize=False,
                                                      add_generation_prompt=True, **(req.chat_template_kwargs or {}))
        except ApiError:
            raise
        except Exception as exc:  # jinja's TemplateError, a missing role ...: the messages are at fault
            raise ApiError(400, f"The chat template rejected the messages: {type(exc).__name__}: {exc}",
                           param="messages") from exc
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def completion_prompt(self, req: CompletionRequest) -> list[int]:
        """The prompt's ids (text is encoded as the upstream would, special tokens added)."""
        if isinstance(req.prompt, str):
            ids = list(self.tokenizer.encode(req.prompt))
        else:
            ids = list(req.prompt)
        if not ids:
            raise ApiError(400, "prompt is empty; send text or a non-empty list of token ids.", param="prompt")
        return ids

    async def serve(self, req: Any, prompt_ids: list[int], chat: bool) -> Response:
        """Answer one request (whole or streamed)."""
        pool = self._check(req)
        budget = resolve_budget(req, prompt_len=len(prompt_ids), context_length=pool.context_length,
                                effort_table=self.effort_table, default_thinking=self.cfg.thinking_token_budget,
                                default_solution=self.cfg.solution_token_budget)
        sampling = resolve_sampling(req)
        prompts = [prompt_ids] * req.n
        if req.stream:
            return await self._stream(pool, req, prompts, budget, sampling, chat)
        records = await self._whole(pool, prompts, budget, sampling)
        for rec in records:
            self.metrics.completed(rec)
        render = chat_response if chat else completion_response
        return JSONResponse(render(self.cfg.model, prompt_ids, records, self.tokenizer, self.special,
                                   req.return_token_ids))

    async def _whole(self, pool: UpstreamPool, prompts: list[list[int]], budget: Budget, sampling: Any
                     ) -> list[BudgetedCompletion]:
        tried: set[int] = set()
        while True:
            up = self._pick(pool, tried)
            try:
                async with pool.lease(up):
                    return await up.backend.agenerate(prompts, budget, sampling)
            except BackendUnavailable as exc:  # nothing returned yet: try another upstream
                pool.mark_down(up, exc)
                self.metrics.failovers.inc()

    def _pick(self, pool: UpstreamPool, tried: set[int]) -> Upstream:
        try:
            up = pool.pick(tried)
        except NoUpstream as exc:
            raise ApiError(503, str(exc), code="upstream_unavailable") from exc
        tried.add(id(up))
        return up

    async def _stream(self, pool: UpstreamPool, req: Any, prompts: list[list[int]], budget: Budget, sampling: Any,
                      chat: bool) -> Response:
        """Start the stream on an upstream that returns a first piece, then hand the rest to the response."""
        tried: set[int] = set()
        while True:
            up = self._pick(pool, tried)
            stack = contextlib.AsyncExitStack()
            await stack.enter_async_context(pool.lease(up))
            pieces = up.backend.astream(prompts, budget, sampling)
            stack.push_async_callback(pieces.aclose)
            try:
                first = await pieces.__anext__()
            except BackendUnavailable as exc:
                await stack.aclose()
                pool.mark_down(up, exc)
                self.metrics.failovers.inc()
                continue
            except BaseException:
                await stack.aclose()
                raise
            break

        async def chained() -> AsyncIterator[StreamPiece]:
            yield first
            async for piece in pieces:
                yield piece

        options = req.stream_options or {}
        events = stream_events(
            chained(), chat=chat, model=self.cfg.model, n=req.n, prompt_len=len(prompts[0]),
            tokenizer=self.tokenizer, special=self.special, include_usage=bool(options.get("include_usage")),
            with_ids=req.return_token_ids, on_done=self.metrics.completed,
        )

        async def body() -> AsyncIterator[str]:
            try:
                async for line in events:
                    yield line
            except (BackendError, BudgetError) as exc:  # tokens already went out: the client sees the error
                yield sse(error_body(502, f"The upstream failed mid-stream: {exc}", code="upstream_error"))
                yield sse("[DONE]")
            finally:
                await stack.aclose()

        return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


class _Edge:
    """Pure ASGI middleware: caller auth on ``/v1/*`` and request metrics.

    (Not Starlette's ``BaseHTTPMiddleware``: its task group cancels a streamed body at
    every await, which left upstream connections open when a client went away.)
    """

    def __init__(self, app: Any, proxy: _Proxy, authenticate: Authenticator | None) -> None:
        self.app, self.proxy, self.authenticate = app, proxy, authenticate

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path.startswith("/v1/") and self.authenticate is not None:
            header = dict(scope.get("headers") or []).get(b"authorization")
            who = self.authenticate(None if header is None else header.decode("latin-1"))
            if not isinstance(who, (str, type(None))):
                who = await who
            if who is None:
                body = error_body(401, "Missing or unknown API key: send Authorization: Bearer <key>.",
                                  code="invalid_api_key")
                await JSONResponse(body, 401, headers={"WWW-Authenticate": 'Bearer realm="er-proxy"'})(
                    scope, receive, send)
                return
        if path not in ("/v1/chat/completions", "/v1/completions"):
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), ["500"]

        async def observed(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            self.proxy.metrics.requests.labels(path, status[0]).inc()
            self.proxy.metrics.latency.labels(path).observe(time.perf_counter() - start)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "Malformed request body.", None
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    if first.get("type") == "json_invalid":
        return f"The body is not valid JSON: {first.get('msg')}.", None
    got = first.get("input")
    where = f"{param}: " if param else ""
    return f"{where}{first.get('msg')} (got {got!r}).", param


def create_app(
    cfg: ProxyConfig, *, tokenizer: Any = None, authenticate: Authenticator | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """Build the proxy app.

    Args:
        cfg: the settings.
        tokenizer: a loaded tokenizer (default: ``load_tokenizer(cfg.tokenizer)``).
        authenticate: checks the ``Authorization`` header of every ``/v1`` request and
            returns the caller's id, or ``None`` to answer 401; ``None``: no caller auth.
        transport: an ``httpx`` transport for the upstream client (tests).

    Returns:
        The app; the upstream pool starts (first health check) with the app's lifespan.

    Raises:
        TokenizerNotFound: the tokenizer cannot be loaded.

    """
    proxy = _Proxy(cfg, load_tokenizer(tokenizer if tokenizer is not None else cfg.tokenizer), transport)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if proxy.pool is not None:
            await proxy.pool.start()
        yield
        if proxy.pool is not None:
            await proxy.pool.close()

    app = FastAPI(title="er proxy: OpenAI-compatible Elastic Reasoning endpoint", version="1", lifespan=lifespan)
    app.state.proxy = proxy

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.status, exc.message, exc.param, exc.code), exc.status)

    @app.exception_handler(BudgetError)
    async def _budget(_: Request, exc: BudgetError) -> JSONResponse:
        return JSONResponse(error_body(400, str(exc), "messages"), 400)

    @app.exception_handler(BackendError)
    async def _upstream(_: Request, exc: BackendError) -> JSONResponse:
        return JSONResponse(error_body(502, f"The upstream failed: {exc}", code="upstream_error"), 502)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return JSONResponse(error_body(400, message, param), 400)

    app.add_middleware(_Edge, proxy=proxy, authenticate=authenticate)

    @app.get("/health")
    async def health() -> JSONResponse:
        ups = proxy.pool.status() if proxy.pool is not None else []
        ok = any(u["healthy"] for u in ups)
        return JSONResponse({"status": "ok" if ok else "unavailable", "upstreams": ups,
                             "tokenizer_error": proxy.tokenizer_error}, 200 if ok else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(proxy.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        length = proxy.pool.context_length if proxy.pool is not None else cfg.context_length
        return {"object": "list", "data": [{"id": cfg.model, "object": "model", "created": 0, "owned_by": "er-proxy",
                                            "root": cfg.model, "max_model_len": length}]}

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest) -> Response:
        proxy._check(req)
        return await proxy.serve(req, proxy.chat_prompt(req), chat=True)

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest) -> Response:
        proxy._check(req)
        return await proxy.serve(req, proxy.completion_prompt(req), chat=False)

    return app

