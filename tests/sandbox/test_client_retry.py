"""The client's retry rules against a scripted HTTP server: Retry-After is honoured, a 500 written by a proxy
(not the service's JSON error) is retried, a 500 from the service is not."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sandbox.service.client import SandboxClient, SandboxServerError

MATH_OK = {"results": [{"status": "correct", "reward": 1.0, "correct": True, "reason": "", "pred": "1",
                        "gold": ["1"]}]}


class Script:
    """Answers the n-th request with ``steps[n]`` = ``(status, body bytes, headers)`` (the last repeats)."""

    def __init__(self, steps: list[tuple[int, bytes, dict[str, str]]]) -> None:
        self.steps, self.times = steps, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length") or 0))
                status, body, headers = outer.steps[min(len(outer.times), len(outer.steps) - 1)]
                outer.times.append(time.monotonic())
                self.send_response(status)
                for key, value in {"content-length": str(len(body)), **headers}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "Script":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


OK = (200, json.dumps(MATH_OK).encode(), {"content-type": "application/json"})


def test_503_retry_after_is_waited_for():
    busy = (503, b'{"error": "overloaded", "detail": "busy"}', {"content-type": "application/json",
                                                                "retry-after": "1"})
    with Script([busy, OK]) as srv:
        with SandboxClient(srv.url, max_retries=2, backoff_s=0.01) as client:
            assert client.check_math("1", pred="1").correct
        assert len(srv.times) == 2
        assert srv.times[1] - srv.times[0] >= 0.95  # the server's 1 s, not the client's 0.01 s


def test_async_client_honours_retry_after_too():
    import asyncio

    busy = (503, b"Service Unavailable", {"retry-after": "1"})
    with Script([busy, OK]) as srv:
        async def main():
            async with SandboxClient(srv.url, max_retries=2, backoff_s=0.01) as client:
                return await client.acheck_math("1", pred="1")

        assert asyncio.run(main()).correct
        assert srv.times[1] - srv.times[0] >= 0.95


def test_a_proxy_500_is_retried_but_a_service_500_is_not():
    proxy = (500, b"Internal Server Error", {"content-type": "text/plain"})
    with Script([proxy, proxy, OK]) as srv:
        with SandboxClient(srv.url, max_retries=3, backoff_s=0.01) as client:
            assert client.check_math("1", pred="1").correct
        assert len(srv.times) == 3
    service = (500, b'{"error": "internal_error", "detail": "math checker failed"}', {"content-type":
                                                                                      "application/json"})
    with Script([service, OK]) as srv:
        with SandboxClient(srv.url, max_retries=3, backoff_s=0.01) as client:
            with pytest.raises(SandboxServerError, match="math checker failed"):
                client.check_math("1", pred="1")
        assert len(srv.times) == 1


def test_unparseable_retry_after_falls_back_to_backoff():
    busy = (503, b"busy", {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})
    with Script([busy, OK]) as srv:
        with SandboxClient(srv.url, max_retries=1, backoff_s=0.01) as client:
            assert client.check_math("1", pred="1").correct
        assert srv.times[1] - srv.times[0] < 0.9
