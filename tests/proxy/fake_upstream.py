"""A fast, deterministic fake ``/v1/completions`` server (raw ASGI) and a helper that serves apps on a real port.

The fake "model" thinks ``think_len`` tokens, writes ``</think>``, answers ``answer_len``
tokens and ends with EOS, continuing from wherever the prompt stands (a prompt that
holds ``</think>`` continues the answer). It follows vLLM's request rules: ``max_tokens``,
``stop_token_ids`` (kept in ``token_ids``), EOS, ``return_token_ids``, ``stream`` (one
event per token, ``delay_s`` apart). Faults: ``fail_status`` answers every completion
with that status; ``die_after`` aborts the connection after that many streamed tokens.
``stats`` counts requests, finished streams and streams the client closed early.
Used by tests/proxy and benchmarks/bench_proxy.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

__all__ = ["FakeUpstream", "serve_in_thread"]


@dataclass
class FakeUpstream:
    """The fake server's model and faults (an ASGI app: ``await fake(scope, receive, send)``)."""

    think_end: int
    eos: int
    model: str = "fake"
    think_len: int = 12
    answer_len: int = 6
    max_model_len: int = 512
    delay_s: float = 0.0
    fail_status: int | None = None
    die_after: int | None = None
    stats: dict[str, int] = field(default_factory=lambda: {"requests": 0, "streams_done": 0, "streams_closed": 0,
                                                           "models": 0})

    def continuation(self, prompt: list[int]) -> Iterator[int]:
        """The tokens the fake model writes after ``prompt``."""
        if self.think_end in prompt:
            done = len(prompt) - 1 - prompt[::-1].index(self.think_end)
            answered = len(prompt) - done - 1
        else:
            thought = 0
            while thought < self.think_len:
                yield 10 + thought % 30
                thought += 1
            yield self.think_end
            answered = 0
        while answered < self.answer_len:
            yield 50 + answered % 30
            answered += 1
        yield self.eos

    def generate(self, body: dict[str, Any]) -> tuple[list[int], str, int | None]:
        """``(token_ids, finish_reason, stop_reason)`` for a request body."""
        stops = set(body.get("stop_token_ids") or ())
        cap = body.get("max_tokens") or self.max_model_len - len(body["prompt"])
        out: list[int] = []
        for tok in self.continuation(list(body["prompt"])):
            out.append(tok)
            if tok in stops:
                return out, "stop", (None if tok == self.eos else tok)
            if tok == self.eos:
                return out, "stop", None
            if len(out) >= cap:
                break
        return out, "length", None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()  # lifespan.startup
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        if path in ("/health", "/v1/models"):
            self.stats["models"] += path == "/v1/models"
            payload = {"object": "list", "data": [{"id": self.model, "object": "model",
                                                   "max_model_len": self.max_model_len}]}
            await _json(send, 200, payload if path == "/v1/models" else {"status": "ok"})
            return
        raw = b""
        while True:
            msg = await receive()
            raw += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        self.stats["requests"] += 1
        if self.fail_status is not None:
            await _json(send, self.fail_status, {"error": {"message": "fake failure"}})
            return
        body = json.loads(raw)
        ids, finish, stop = self.generate(body)
        if not body.get("stream"):
            choice = {"index": 0, "text": "", "token_ids": ids, "finish_reason": finish, "stop_reason": stop,
                      "logprobs": None}
            await _json(send, 200, {"id": "cmpl-fake", "object": "text_completion", "model": self.model,
                                    "choices": [choice], "usage": {"prompt_tokens": len(body["prompt"]),
                                                                   "completion_tokens": len(ids)}})
            return
        await self._stream(send, receive, ids, finish, stop)

    async def _stream(self, send: Any, receive: Any, ids: list[int], finish: str, stop: int | None) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.ensure_future(watch())
        try:
            for k, tok in enumerate(ids):
                if self.die_after is not None and k >= self.die_after:
                    raise ConnectionAbortedError("fake upstream died mid-stream")
                if self.delay_s:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(gone.wait(), self.delay_s)
                if gone.is_set():
                    self.stats["streams_closed"] += 1
                    return
                last = k + 1 == len(ids)
                choice = {"index": 0, "text": "", "token_ids": [tok], "finish_reason": finish if last else None,
                          "stop_reason": stop if last else None}
                event = f"data: {json.dumps({'id': 'cmpl-fake', 'choices': [choice]})}\n\n".encode()
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
            self.stats["streams_done"] += 1
        finally:
            watcher.cancel()


async def _json(send: Any, status: int, payload: dict[str, Any]) -> None:
    data = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def free_port() -> int:
    """A TCP port nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_in_thread(app: Any, port: int | None = None) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1 in a daemon thread; yields its base URL."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
