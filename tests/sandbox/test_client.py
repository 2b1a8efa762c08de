"""SandboxClient: a real uvicorn server subprocess, tiny scripted servers, and in-process mode."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sandbox.core.verdicts import Verdict
from sandbox.service.client import SandboxClient, SandboxRequestError, SandboxServerError, SandboxUnavailable
from sandbox.service.local_server import LocalServer, free_port
from sandbox.service.service import ServiceConfig

DOUBLE = {"kind": "stdio", "cases": [{"input": "2", "output": "4"}, {"input": "21", "output": "42"}]}
GOOD = {"code": "print(2 * int(input()))", "tests": DOUBLE}
BAD = {"code": "print(4)", "tests": DOUBLE}
MATH_OK = {"results": [{"status": "correct", "reward": 1.0, "extracted": "1", "matched_gold": "1", "reason": "",
                        "elapsed_s": 0.0, "is_error": False}]}


@pytest.fixture(scope="module")
def server():
    with LocalServer(judge_workers=2, math_workers=1, max_batch_size=4,
                     isolation_options={"base_uid": 63200, "workers": 2}) as srv:
        yield srv


@pytest.fixture(scope="module")
def local():
    config = ServiceConfig(judge_workers=2, math_workers=1, max_batch_size=4,
                           isolation_options={"base_uid": 63300, "workers": 2})
    with SandboxClient(None, service_config=config, batch_size=4) as client:
        yield client


def test_sync_judge_batch_run_math_health(server):
    with SandboxClient(server.url, batch_size=2, max_concurrency=2) as client:
        assert client.judge(GOOD).verdict is Verdict.AC
        # 5 submissions in chunks of 2 -> 3 requests; order kept
        results = client.judge_batch([GOOD, BAD, GOOD, BAD, GOOD])
        assert [r.verdict for r in results] == [Verdict.AC, Verdict.WA, Verdict.AC, Verdict.WA, Verdict.AC]
        assert client.run("print(input()[::-1])", "abc").test["stdout"] == "cba\n"
        assert client.check_math("\\frac12", "</think> \\boxed{0.5}").correct
        verdicts = client.check_math_batch([("7", "</think> \\boxed{7}"), {"gold": ["1", "2"], "pred": "2, 1",
                                                                         "require": "all"}])
        assert [v.status.wire_name for v in verdicts] == ["correct", "correct"]
        health = client.health()
        assert health["ok"] is True and health["isolation"]["backend"] == "process"


def test_async_paths(server):
    async def main():
        async with SandboxClient(server.url, batch_size=2, max_concurrency=2) as client:
            one = await client.ajudge(BAD)
            many = await client.ajudge_batch([GOOD, BAD, GOOD])
            math = await client.acheck_math_batch([("3", "</think> \\boxed{3}"), ("3", "</think> \\boxed{4}")])
            ran = await client.arun("print(1 + 1)")
            return one, many, math, ran

    one, many, math, ran = asyncio.run(main())
    assert one.verdict is Verdict.WA and [r.verdict for r in many] == [Verdict.AC, Verdict.WA, Verdict.AC]
    assert [v.status.wire_name for v in math] == ["correct", "wrong"] and ran.test["stdout"] == "2\n"


def test_language_reaches_the_server(server, local):
    cpp = {"code": "#include <iostream>\nint main(){long long n; std::cin >> n; std::cout << 2 * n << std::endl;}",
           "tests": DOUBLE, "language": "cpp"}
    with SandboxClient(server.url) as client:
        remote = client.judge_batch([cpp, {**cpp, "language": "python"}])
    assert [r.verdict for r in remote] == [Verdict.AC, Verdict.CE]
    assert [r.verdict for r in local.judge_batch([cpp])] == [Verdict.AC]


def test_client_rejects_bad_requests_without_retry(server):
    with SandboxClient(server.url, max_retries=3, backoff_s=5.0) as client:
        with pytest.raises(SandboxRequestError, match="kind") as info:
            client.judge({"code": "x", "tests": {"kind": "nope"}})
        assert info.value.status == 422
        with pytest.raises(SandboxRequestError, match="exactly one"):  # caught client-side, same rule
            client.judge({"code": "x", "completion": "y", "tests": DOUBLE})
        with pytest.raises(SandboxRequestError, match="max_code_chars") as info:
            client.judge({"code": "x" * 500_000, "tests": DOUBLE})
        assert info.value.status == 413


def test_http_and_in_process_give_the_same_results(server, local):
    subs = [GOOD, BAD, {"completion": "no think", "tests": DOUBLE},
            {"code": "raise ValueError('boom')", "tests": DOUBLE}, {"code": "print(", "tests": DOUBLE}]
    with SandboxClient(server.url) as remote:
        a = remote.judge_batch(subs)
        m = remote.check_math_batch([("2", "</think>\\boxed{2}"), ("2", "</think>\\boxed{3}"), ("2", "none")])
    b = local.judge_batch(subs)
    n = local.check_math_batch([("2", "</think>\\boxed{2}"), ("2", "</think>\\boxed{3}"), ("2", "none")])
    assert [r.verdict for r in a] == [r.verdict for r in b] == [Verdict.AC, Verdict.WA, Verdict.NO_CODE, Verdict.RE,
                                                                  Verdict.CE]
    assert [(r.passed, r.total) for r in a] == [(r.passed, r.total) for r in b]
    assert [v.status for v in m] == [v.status for v in n]
    assert [v.extracted for v in m] == [v.extracted for v in n]


def test_in_process_chunks_over_the_batch_limit(local):
    results = local.judge_batch([GOOD] * 6)  # service max_batch_size=4; client batch_size=4
    assert [r.verdict for r in results] == [Verdict.AC] * 6
    with pytest.raises(SandboxRequestError, match="kind"):
        local.judge({"code": "x", "tests": {"kind": "nope"}})


def test_batches_over_the_server_limit_are_split_in_halves():
    """A 413 on a batch resends its halves (concurrently); other errors and single items propagate."""
    from sandbox.service.client import _split_on_413

    sent: list[list[int]] = []

    async def send(items):
        sent.append(list(items))
        if len(items) > 2:
            raise SandboxRequestError(413, "request_too_large", f"{len(items)} > 2")
        return [x * 10 for x in items]

    assert asyncio.run(_split_on_413(send, [1, 2, 3, 4, 5])) == [10, 20, 30, 40, 50]
    assert sorted(len(b) for b in sent) == [1, 2, 2, 3, 5]

    async def reject(items):
        raise SandboxRequestError(422 if len(items) > 1 else 413, "invalid_request", "no")

    with pytest.raises(SandboxRequestError) as info:
        asyncio.run(_split_on_413(reject, [1, 2]))  # 422: the caller's mistake, never split
    assert info.value.status == 422
    with pytest.raises(SandboxRequestError) as info:
        asyncio.run(_split_on_413(reject, [1]))  # 413 on a single item cannot be split
    assert info.value.status == 413


# ---------------------------------------------------------------------------- scripted servers
class Scripted:
    """A tiny HTTP server on 127.0.0.1 whose replies follow a script; counts requests and concurrency."""

    def __init__(self, script, delay_s: float = 0.0) -> None:
        self.script, self.delay_s = list(script), delay_s
        self.requests = 0
        self.active = self.max_active = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                with outer._lock:
                    step = outer.script[min(outer.requests, len(outer.script) - 1)]
                    outer.requests += 1
                    outer.active += 1
                    outer.max_active = max(outer.max_active, outer.active)
                try:
                    time.sleep(outer.delay_s)
                    if step == "drop":  # close the connection without any reply
                        self.close_connection = True
                        return
                    status, body = step
                    data = json.dumps(body).encode()
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    with outer._lock:
                        outer.active -= 1

            do_GET = do_POST = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_retries_dropped_connections_and_503_then_succeeds():
    with Scripted(["drop", "drop", (503, {"error": "overloaded", "detail": "busy"}), (200, MATH_OK)]) as srv:
        with SandboxClient(srv.url, max_retries=3, backoff_s=0.01) as client:
            assert client.check_math("1", pred="1").correct
        assert srv.requests == 4


def test_async_retries_dropped_connections():
    with Scripted(["drop", (200, MATH_OK)]) as srv:
        async def main():
            async with SandboxClient(srv.url, max_retries=2, backoff_s=0.01) as client:
                return await client.acheck_math("1", pred="1")

        assert asyncio.run(main()).correct
        assert srv.requests == 2


def test_no_retry_on_4xx_or_500():
    with Scripted([(422, {"error": "invalid_request", "detail": "tests: bad kind"})]) as srv:
        with SandboxClient(srv.url, max_retries=3, backoff_s=0.01) as client:
            with pytest.raises(SandboxRequestError, match="bad kind"):
                client.check_math("1", pred="1")
        assert srv.requests == 1
    with Scripted([(500, {"error": "internal_error", "detail": "disk on fire"})]) as srv:
        with SandboxClient(srv.url, max_retries=3, backoff_s=0.01) as client:
            with pytest.raises(SandboxServerError, match="disk on fire"):
                client.check_math("1", pred="1")
        assert srv.requests == 1


def test_malformed_success_reply_is_a_server_error():
    with Scripted([(200, {"results": "not a list"}), (200, [1, 2])]) as srv:
        with SandboxClient(srv.url, max_retries=0) as client:
            with pytest.raises(SandboxServerError, match="malformed MathCheckResponse"):
                client.check_math("1", pred="1")
            with pytest.raises(SandboxServerError, match="malformed JudgeResponse"):
                client.judge(GOOD)


def test_gives_up_after_retries_naming_the_url():
    with Scripted([(503, {"error": "overloaded", "detail": "busy"})]) as srv:
        with SandboxClient(srv.url, max_retries=2, backoff_s=0.01) as client:
            with pytest.raises(SandboxUnavailable, match="3 attempt"):
                client.check_math("1", pred="1")
        assert srv.requests == 3


def test_down_server_fails_with_a_clear_error():
    url = f"http://127.0.0.1:{free_port()}"
    with SandboxClient(url, max_retries=1, backoff_s=0.01, connect_timeout_s=2.0) as client:
        with pytest.raises(SandboxUnavailable) as info:
            client.judge(GOOD)
    message = str(info.value)
    assert url in message and "2 attempt(s)" in message and "ConnectError" in message


def test_concurrency_is_bounded_sync_and_async():
    ok = {"results": MATH_OK["results"]}
    with Scripted([(200, ok)], delay_s=0.15) as srv:
        with SandboxClient(srv.url, max_concurrency=2, math_batch_size=1) as client:
            assert len(client.check_math_batch([("1", "x")] * 6)) == 6
        assert srv.requests == 6 and srv.max_active == 2

    with Scripted([(200, ok)], delay_s=0.15) as srv:
        async def main():
            async with SandboxClient(srv.url, max_concurrency=3) as client:
                await asyncio.gather(*(client.acheck_math("1", pred="1") for _ in range(7)))

        asyncio.run(main())
        assert srv.requests == 7 and srv.max_active == 3


def test_client_settings_are_checked():
    with pytest.raises(ValueError, match="http://"):
        SandboxClient("127.0.0.1:8000")
    with pytest.raises(ValueError, match="max_concurrency=0"):
        SandboxClient("http://127.0.0.1:1", max_concurrency=0)
    assert SandboxClient("local").local and SandboxClient("inprocess").local and SandboxClient(None).local


# ---------------------------------------------------------------------------- er sandbox (CLI)
def test_cli_judge_in_process_and_over_http(server, tmp_path, capsys):
    from er_cli import main

    problem = tmp_path / "problem.json"
    problem.write_text(json.dumps({"id": "t/1", "task": "code", "question": "double", "tests": DOUBLE}))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(DOUBLE))
    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_text(GOOD["code"])
    bad.write_text(BAD["code"])
    assert main(["sandbox", "judge", "--problem", str(problem), "--code", str(good), "--endpoint", server.url]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "AC"
    argv = ["sandbox", "judge", "--problem", str(spec), "--code", str(bad), "--stop-on-first-failure", "false",
            "--isolation-options", '{"base_uid": 63600, "workers": 1}']
    assert main(argv) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "WA" and len(out["tests"]) == 2
    (tmp_path / "junk.json").write_text("[1]")
    assert main(["sandbox", "judge", "--problem", str(tmp_path / "junk.json"), "--code", str(good)]) == 1
    assert "neither a Problem dict" in capsys.readouterr().err
    assert main(["sandbox", "health", "--endpoint", server.url]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_judging_does_not_block_the_event_loop(server):
    """While a slow submission is being judged, the server still answers other requests."""
    import httpx

    slow = {"code": "import time\ntime.sleep(5)\nprint(4)",
            "tests": {"kind": "stdio", "cases": [{"input": "", "output": "4"}]}}
    done: list = []
    worker = threading.Thread(target=lambda: done.append(SandboxClient(server.url).judge(slow)))
    worker.start()
    seen_in_flight = False
    for _ in range(100):  # bounded: at most ~10 s
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        if 'er_sandbox_in_flight_requests{endpoint="/judge"} 1.0' in text:
            seen_in_flight = True
            break
        time.sleep(0.1)
    answered_meanwhile = httpx.post(f"{server.url}/math/check", json={"gold": "1", "pred": "1"}, timeout=10)
    still_judging = not done
    worker.join(timeout=60)
    assert seen_in_flight and still_judging and answered_meanwhile.status_code == 200
    assert done and done[0].verdict is Verdict.AC


def test_er_sandbox_serve_command(tmp_path):
    """`er sandbox serve` starts uvicorn on 127.0.0.1 with flags and ER_SANDBOX_* variables."""
    import os
    import subprocess
    import sys

    import httpx

    port = free_port()
    env = dict(os.environ, ER_SANDBOX_PORT=str(port), ER_SANDBOX_MATH_WORKERS="1",
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    argv = [sys.executable, "-m", "er_cli", "sandbox", "serve", "--judge-workers", "1", "--log-level", "warning",
            "--isolation-options", '{"workers": 1, "base_uid": 63700}']
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        health = None
        for _ in range(600):  # bounded: at most ~60 s
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=30).json()
                break
            except httpx.TransportError:
                assert proc.poll() is None, "er sandbox serve exited"
                time.sleep(0.1)
        assert health is not None and health["ok"] is True and health["isolation"]["workers"] == 1
        with SandboxClient(f"http://127.0.0.1:{port}") as client:
            assert client.judge(GOOD).verdict is Verdict.AC
    finally:
        proc.terminate()
        proc.wait(timeout=20)
