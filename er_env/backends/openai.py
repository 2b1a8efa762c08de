"""OpenAI-compatible server backend: ``POST /v1/completions`` with token-id prompts.

:class:`OpenAIBackend` drives the budget protocol (``er_env.budget``, via
:class:`~er_env.backends.two_phase.PhaseDriver`) over HTTP, one request per sample
and phase, at most ``max_concurrency`` in flight (httpx, asyncio). It needs a server
that accepts token-id prompts and returns the completion's token ids:

- request: ``prompt`` (list of ids), ``max_tokens`` (``null``: up to the context),
  ``temperature``, ``top_p``, ``top_k``, ``seed``, ``stop_token_ids`` (vLLM/SGLang
  extension), ``stop`` + ``include_stop_str_in_output`` (multi-token ``</think>``
  only), ``logprobs=1``, ``skip_special_tokens=false``, ``return_token_ids=true``
  and ``return_tokens_as_token_ids=true``;
- response: ids from ``choices[0].token_ids`` (vLLM >= 0.10.2, recent SGLang), else
  parsed from ``choices[0].logprobs.tokens`` entries ``"token_id:123"``
  (vLLM's ``return_tokens_as_token_ids``); logprobs from
  ``choices[0].logprobs.token_logprobs``. A stop id that ended generation is part
  of the ids, as vLLM returns it.

Tested against ``er serve`` (:mod:`er_serving.server`), which follows vLLM's schema;
``vllm serve MODEL`` speaks the same protocol.

Errors: transport errors and 5xx answers are retried (``max_retries``, exponential
backoff); 4xx answers, malformed bodies and an unreachable server raise
:class:`~er_env.backends.base.BackendError` naming the URL, and the whole batch
fails: no partial results.

Seeds: with ``SamplingConfig.seed = s``, sample ``i`` of a call sends ``seed = s + i``.

Example:
    >>> from er_env.backends.openai import OpenAIBackend  # doctest: +SKIP
    >>> backend = OpenAIBackend("http://127.0.0.1:8000", "tiny", tokenizer="/tmp/tiny-r1")  # doctest: +SKIP

"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, AsyncGenerator, AsyncIterator, Sequence

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from er_env.aio import run_sync
from er_env.backends.base import Backend, BackendError, BackendUnavailable, SamplingConfig
from er_env.backends.two_phase import (
    PhaseDriver,
    PhaseOutput,
    PhaseRequest,
    StreamCursor,
    StreamPiece,
    token_id_prompts,
)
from er_env.budget import Budget, BudgetedCompletion, BudgetTracker
from er_env.tokens import load_tokenizer, special_tokens

__all__ = ["OpenAIBackend"]

_TOKEN_ID_PREFIX = "token_id:"


class _Retryable(Exception):
    """A transport error or a 5xx answer: worth another attempt."""


def _load_tokenizer(tokenizer: Any) -> Any:
    if tokenizer is None:
        raise ValueError(
            "OpenAIBackend needs tokenizer=... (a HF tokenizer or its path): token ids, </think> and EOS come from it."
        )
    return load_tokenizer(tokenizer)


class OpenAIBackend(Backend):
    """Budgeted generation against an OpenAI-compatible completion server.

    Args:
        base_url: server root, e.g. ``http://127.0.0.1:8000`` (a trailing ``/v1``
            is accepted).
        model: the model id the server serves (``GET /v1/models``).
        tokenizer: the model's HF tokenizer, or a local directory / hub name to load it from
            (:func:`er_env.tokens.load_tokenizer`).
        api_key: sent as ``Authorization: Bearer ...`` when set.
        max_concurrency: most requests in flight at once.
        timeout_s: per-request timeout (connect, read and write).
        max_retries: extra attempts after a transport error or a 5xx answer.
        retry_backoff_s: first retry delay; doubles on each retry.
        context_length: the model context; default: ``max_model_len`` from
            ``GET /v1/models`` when the server reports it.
        think_end: the thinking delimiter text.
        eos_ids: ids that end a completion (default: the tokenizer's EOS plus the
            ``generation_config.json`` next to it, as servers stop on both).
        transport: an ``httpx.AsyncBaseTransport`` to use instead of the network
            (tests, custom proxies).
        client: a shared ``httpx.AsyncClient`` to send every request with (a server
            that drives several upstreams over one connection pool); its owner closes
            it, and its own headers, timeout and limits apply instead of the ones above.

    Raises:
        ValueError: bad arguments (no tokenizer, non-positive limits).
        TokenizerError: the tokenizer cannot represent ``think_end``.

    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        tokenizer: Any = None,
        api_key: str | None = None,
        max_concurrency: int = 16,
        timeout_s: float = 600.0,
        max_retries: int = 3,
        retry_backoff_s: float = 0.25,
        context_length: int | None = None,
        think_end: str = "</think>",
        eos_ids: Sequence[int] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency <= 0:
            raise ValueError(f"max_concurrency must be a positive int, got {max_concurrency!r}.")
        if max_retries < 0 or timeout_s <= 0:
            raise ValueError(f"Need max_retries >= 0 and timeout_s > 0, got {max_retries!r} and {timeout_s!r}.")
        root = base_url.rstrip("/")
        self.base_url = root[: -len("/v1")] if root.endswith("/v1") else root
        self.model = model
        self.tokenizer = _load_tokenizer(tokenizer)
        self.api_key = api_key
        self.max_concurrency = max_concurrency
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.retry_backoff_s = float(retry_backoff_s)
        self.think_end_text = think_end
        self.special = special_tokens(self.tokenizer, think_end=think_end, eos_ids=eos_ids)
        self.context_length = context_length
        self._context_known = context_length is not None
        self._transport = transport
        self._shared_client = client

    # ------------------------------------------------------------- generation
    def generate(
        self, prompts: Sequence[Sequence[int]], budget: Budget, sampling: SamplingConfig | None = None
    ) -> list[BudgetedCompletion]:
        """Run the budget protocol for each prompt; see :meth:`Backend.generate`.

        Safe to call from inside a running event loop (it then runs in a thread).

        Raises:
            BudgetError: a prompt leaves no room in the model context.
            BackendError: the server is unreachable, refused a request, or answered
                something malformed; nothing partial is returned.

        """
        return run_sync(self.agenerate(prompts, budget, sampling))

    async def agenerate(
        self, prompts: Sequence[Sequence[int]], budget: Budget, sampling: SamplingConfig | None = None
    ) -> list[BudgetedCompletion]:
        """Async form of :meth:`generate`."""
        sampling = sampling or SamplingConfig()
        async with self._client() as client:
            await self._ensure_context(client)
            trackers = [BudgetTracker(budget, self.special, p, self.context_length) for p in token_id_prompts(prompts)]
            driver = PhaseDriver(trackers, self.think_end_text)
            gate = asyncio.Semaphore(self.max_concurrency)
            while requests := driver.next_requests():
                driver.apply(await self._run_all(client, gate, requests, sampling))
        return [t.result(text=self.decode(t.completion_ids)) for t in trackers]

    async def astream(
        self, prompts: Sequence[Sequence[int]], budget: Budget, sampling: SamplingConfig | None = None
    ) -> AsyncGenerator[StreamPiece, None]:
        """Run the budget protocol with streamed phases; yield each sample's ids as the server sends them.

        The same requests as :meth:`agenerate` with ``stream: true``: every piece of a
        phase goes to the sample's tracker as it arrives, and what the tracker keeps (or
        forces) is yielded at once, tagged thinking / ``</think>`` / solution. Samples
        run concurrently, so their pieces interleave; each sample's last piece carries
        its finished record. Closing the iterator early (a client that went away) cancels
        every request still in flight.

        Yields:
            :class:`~er_env.backends.two_phase.StreamPiece` records.

        Raises:
            BudgetError: a prompt leaves no room in the model context.
            BackendUnavailable: the server is unreachable or answered 5xx.
            BackendError: the server refused a request or streamed something malformed.

        """
        sampling = sampling or SamplingConfig()
        async with self._client() as client:
            await self._ensure_context(client)
            trackers = [BudgetTracker(budget, self.special, p, self.context_length) for p in token_id_prompts(prompts)]
            driver = PhaseDriver(trackers, self.think_end_text)
            queue: asyncio.Queue[StreamPiece | BaseException | None] = asyncio.Queue()
            tasks = [asyncio.ensure_future(self._stream_sample(client, driver, i, sampling, queue))
                     for i in range(len(trackers))]
            try:
                left = len(tasks)
                while left:
                    item = await queue.get()
                    if item is None:
                        left -= 1
                    elif isinstance(item, BaseException):
                        raise item
                    else:
                        yield item
            finally:
                for task in tasks:
                    task.cancel()
                # shielded: a caller inside a cancelled anyio scope (a Starlette streaming response
                # whose client left) is cancelled at every await, and an unshielded gather would
                # cancel the tasks' clean-up again each time: their upstream connections would stay
                # open and the upstream would keep generating
                await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))

    async def _stream_sample(
        self, client: httpx.AsyncClient, driver: PhaseDriver, index: int, sampling: SamplingConfig,
        queue: asyncio.Queue[StreamPiece | BaseException | None],
    ) -> None:
        """Drive sample ``index`` through its streamed phases, putting pieces (or the error, then None) on ``queue``."""
        tracker = driver.trackers[index]
        cursor = StreamCursor(index, tracker)
        try:
            while (req := driver.request(index)) is not None:
                phase, finish = tracker.phase, None
                async for ids, lps, reason in self._stream_phase(client, req, sampling):
                    finish = reason
                    if ids:
                        driver.feed_piece(index, ids, lps)
                        for piece in cursor.advance():
                            queue.put_nowait(piece)
                    if tracker.phase is not phase:
                        break  # the phase ended here: stop the server generating what would be dropped
                driver.end_stream(index, finish if tracker.phase is phase else None)
            for piece in cursor.advance(final=self.decode(tracker.completion_ids)):
                queue.put_nowait(piece)
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            queue.put_nowait(exc)
        queue.put_nowait(None)

    async def _stream_phase(
        self, client: httpx.AsyncClient, req: PhaseRequest, sampling: SamplingConfig
    ) -> AsyncIterator[tuple[tuple[int, ...], tuple[float, ...] | None, str | None]]:
        """One streamed ``/v1/completions`` call: yields ``(ids, logprobs, finish_reason)`` per event."""
        url = f"{self.base_url}/v1/completions"
        body = {**self._payload(req, sampling), "stream": True}
        try:
            resp = await client.send(client.build_request("POST", url, json=body), stream=True)
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"POST {url} (stream) failed: {type(exc).__name__}: {exc}") from exc
        try:
            if resp.status_code >= 400:
                text = (await resp.aread()).decode("utf-8", "replace")[:500]
                error = BackendUnavailable if resp.status_code >= 500 else BackendError
                raise error(f"POST {url} (stream) was refused with HTTP {resp.status_code}: {text}")
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    chunk = json.loads(data)
                except ValueError as exc:
                    raise BackendError(f"POST {url} streamed a non-JSON event: {data[:300]!r}") from exc
                if isinstance(chunk, dict) and chunk.get("error"):
                    raise BackendError(f"POST {url} streamed an error: {str(chunk['error'])[:500]}")
                if isinstance(chunk, dict) and not chunk.get("choices"):
                    continue  # a usage-only event
                out = self._parse(chunk, sampling.logprobs, check_stop=False)
                yield out.token_ids, out.logprobs, out.finish_reason
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"POST {url} (stream) failed: {type(exc).__name__}: {exc}") from exc
        finally:
            await resp.aclose()

    @contextlib.asynccontextmanager
    async def _client(self) -> AsyncIterator[httpx.AsyncClient]:
        if self._shared_client is not None:
            yield self._shared_client
            return
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)
        async with httpx.AsyncClient(
            headers=headers, timeout=self.timeout_s, limits=limits, transport=self._transport
        ) as client:
            yield client

    async def _ensure_context(self, client: httpx.AsyncClient) -> None:
        if not self._context_known:
            self.context_length = await self._fetch_context_length(client)
            self._context_known = True

    def set_context_length(self, length: int | None) -> None:
        """Fix the model context (``None``: unknown, the server enforces it); no ``/v1/models`` request follows."""
        self.context_length, self._context_known = length, True

    async def fetch_context_length(self) -> int | None:
        """The model context from ``GET /v1/models`` (once; later calls return the known value).

        Raises:
            BackendUnavailable: the server is unreachable.
            BackendError: the server does not serve :attr:`model`.

        """
        async with self._client() as client:
            await self._ensure_context(client)
        return self.context_length

    async def _run_all(
        self, client: httpx.AsyncClient, gate: asyncio.Semaphore, requests: list[PhaseRequest], sampling: SamplingConfig
    ) -> list[PhaseOutput]:
        async def one(req: PhaseRequest) -> PhaseOutput:
            async with gate:
                body = await self._call(client, "POST", "/v1/completions", self._payload(req, sampling))
            return self._parse(body, sampling.logprobs)

        tasks = [asyncio.ensure_future(one(r)) for r in requests]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    def _payload(self, req: PhaseRequest, sampling: SamplingConfig) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": list(req.prompt_ids),
            "max_tokens": req.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "n": 1,
            "stream": False,
            "stop_token_ids": list(req.stop_token_ids),
            "skip_special_tokens": False,
            "return_token_ids": True,
            "return_tokens_as_token_ids": True,
        }
        if sampling.top_k and sampling.top_k > 0:
            body["top_k"] = sampling.top_k
        if sampling.seed is not None:
            body["seed"] = sampling.seed + req.sample_index
        if sampling.logprobs:
            body["logprobs"] = 1
        if req.stop_strings:
            body.update(stop=list(req.stop_strings), include_stop_str_in_output=True)
        return body

    # ------------------------------------------------------------------- HTTP
    async def _call(
        self, client: httpx.AsyncClient, method: str, path: str, body: Any = None, *, missing_ok: bool = False
    ) -> Any:
        """One request with retries on transport errors and 5xx; returns the JSON body (None: 404 and missing_ok)."""
        url = f"{self.base_url}{path}"
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait_exponential(multiplier=self.retry_backoff_s, max=60.0),  # backoff, 2x backoff, 4x ...
            retry=retry_if_exception_type(_Retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    resp = await self._send(client, method, path, body)
        except _Retryable as exc:
            raise BackendUnavailable(
                f"Cannot get an answer from the OpenAI-compatible server at {url} after {self.max_retries + 1} "
                f"attempt(s): {exc}. Start one (e.g. `er serve --model PATH` or `vllm serve PATH`) or fix base_url."
            ) from None
        if resp.status_code == 404 and missing_ok:
            return None
        if resp.status_code >= 400:
            raise BackendError(
                f"{method} {url} was refused with HTTP {resp.status_code}: {resp.text[:500]}. Check the model "
                f"name ({self.model!r}), the budgets against the server's context, and that the server "
                "accepts token-id prompts."
            )
        try:
            return resp.json()
        except ValueError as exc:
            raise BackendError(f"{method} {url} answered non-JSON: {resp.text[:300]!r}") from exc

    async def _send(self, client: httpx.AsyncClient, method: str, path: str, body: Any) -> httpx.Response:
        """One attempt; transport errors and 5xx answers raise :class:`_Retryable`."""
        try:
            resp = await client.request(method, f"{self.base_url}{path}", json=body)
        except httpx.TransportError as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        if resp.status_code >= 500:
            raise _Retryable(f"HTTP {resp.status_code}: {resp.text[:300]}")
        return resp

    async def _fetch_context_length(self, client: httpx.AsyncClient) -> int | None:
        body = await self._call(client, "GET", "/v1/models", missing_ok=True)
        if body is None:  # a server without /v1/models: context unknown, the server enforces it
            return None
        cards = body.get("data") if isinstance(body, dict) else None
        if not isinstance(cards, list):
            raise BackendError(f"GET {self.base_url}/v1/models answered without a 'data' list: {str(body)[:300]}")
        ids = [c.get("id") for c in cards if isinstance(c, dict)]
        card = next((c for c in cards if isinstance(c, dict) and c.get("id") == self.model), None)
        if card is None:
            raise BackendError(f"The server at {self.base_url} does not serve model {self.model!r}; it serves {ids}.")
        length = card.get("max_model_len")
        return length if isinstance(length, int) and length > 0 else None

    def _parse(self, body: Any, want_logprobs: bool, *, check_stop: bool = True) -> PhaseOutput:
        """Completion JSON (or one streamed event) -> :class:`PhaseOutput`; a misshapen field is a BackendError.

        ``check_stop=False`` for streamed events: the stop id may have come in an earlier one.
        """
        try:
            choice = body["choices"][0]
            lp_block = choice.get("logprobs") or {}
            ids = choice.get("token_ids")
            if ids is None and lp_block.get("tokens") is not None:
                ids = [self._token_id(t) for t in lp_block["tokens"]]
            if ids is None:
                raise BackendError(
                    f"The server at {self.base_url} returned no completion token ids. It must support "
                    "return_token_ids (vLLM >= 0.10.2, SGLang) or return_tokens_as_token_ids with logprobs."
                )
            ids = tuple(int(t) for t in ids)
            stop = choice.get("stop_reason", choice.get("matched_stop"))
            if check_stop and isinstance(stop, int) and not isinstance(stop, bool) and (not ids or ids[-1] != stop):
                raise BackendError(
                    f"The server at {self.base_url} stopped on token id {stop} but left it out of the returned "
                    "ids; this backend needs stop tokens kept in token_ids, as vLLM returns them."
                )
            logprobs = None
            if want_logprobs and ids:
                raw = lp_block.get("token_logprobs")
                if raw is None or len(raw) != len(ids) or any(v is None for v in raw):
                    raise BackendError(
                        f"The server at {self.base_url} returned {0 if raw is None else len(raw)} logprobs for "
                        f"{len(ids)} tokens; expected one float per token (logprobs=1)."
                    )
                logprobs = tuple(float(v) for v in raw)
            return PhaseOutput(ids, logprobs, choice.get("finish_reason"))
        except BackendError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise BackendError(
                f"Malformed completion from {self.base_url}: {type(exc).__name__}: {exc}; body: {str(body)[:300]}"
            ) from exc

    @staticmethod
    def _token_id(token: Any) -> int:
        if isinstance(token, str) and token.startswith(_TOKEN_ID_PREFIX):
            return int(token[len(_TOKEN_ID_PREFIX) :])
        raise ValueError(f"logprobs token {token!r} is not of the form 'token_id:<int>'")
