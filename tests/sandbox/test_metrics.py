"""Service metrics on /metrics (queue depth, in-flight jobs, stage latency, worker restarts), and a worker
SIGKILLed under a job: the job is retried on a fresh worker, the caller sees one correct verdict."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from fastapi.testclient import TestClient

from sandbox.service.server import ServerConfig, create_app
from sandbox.service.service import SandboxService

DOUBLE = {"kind": "stdio", "cases": [{"input": "2", "output": "4"}, {"input": "21", "output": "42"}]}


def _sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        head, value = line.rsplit(" ", 1)
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return None


@pytest.fixture(scope="module")
def served():
    config = ServerConfig(judge_workers=2, math_workers=1, isolation_options={"workers": 2})
    service = SandboxService(config)
    with TestClient(create_app(config, service=service)) as client:
        yield client, service
    service.close()


def test_metrics_report_stages_queue_in_flight_and_verdicts(served):
    client, service = served
    worker = service.metrics.worker
    before = {s: service.metrics.stage_count(s) for s in ("queue", "run", "compare")}
    subs = [{"code": "print(2 * int(input()))", "tests": DOUBLE}, {"code": "print(4)", "tests": DOUBLE},
            {"completion": "no think end ```python\nprint(4)\n```", "tests": DOUBLE}]
    r = client.post("/judge", json={"submissions": subs})
    assert [x["verdict"] for x in r.json()["results"]] == ["AC", "WA", "NO_CODE"]
    text = client.get("/metrics").text
    # every submission went through the queue and the judge; NO_CODE never reached the backend
    assert service.metrics.stage_count("queue") - before["queue"] == 3
    assert service.metrics.stage_count("compare") - before["compare"] == 3
    assert service.metrics.stage_count("run") - before["run"] == 2
    assert _sample(text, "er_sandbox_queue_depth", worker=worker) == 0
    assert _sample(text, "er_sandbox_jobs_in_flight", worker=worker) == 0
    assert _sample(text, "er_sandbox_worker_restarts_total", worker=worker, backend="process") == 0
    assert _sample(text, "er_sandbox_verdicts_total", endpoint="/judge", verdict="WA") >= 1
    assert _sample(text, "er_sandbox_stage_latency_seconds_count", worker=worker, stage="run") >= 2


def test_in_flight_and_queue_depth_while_judging(served):
    client, service = served
    slow = {"code": "import time\ntime.sleep(1.2)\nprint(4)", "tests": {"kind": "stdio", "cases": [
        {"input": "", "output": "4"}]}}
    done = threading.Event()
    # 4 slow submissions, 2 judge threads: 2 run, 2 wait in the queue
    thread = threading.Thread(target=lambda: (client.post("/judge", json={"submissions": [slow] * 4}), done.set()))
    thread.start()
    seen_running, seen_queued = 0.0, 0.0
    deadline = time.monotonic() + 10
    while not done.is_set() and time.monotonic() < deadline:
        text = client.get("/metrics").text
        seen_running = max(seen_running, _sample(text, "er_sandbox_jobs_in_flight", worker=service.metrics.worker))
        seen_queued = max(seen_queued, _sample(text, "er_sandbox_queue_depth", worker=service.metrics.worker))
        time.sleep(0.1)
    thread.join(30)
    # never more than the 2 judge threads at work; the other submissions are counted as queued meanwhile
    assert seen_running == 2 and seen_queued >= 2, (seen_running, seen_queued)


def test_sigkilled_worker_job_is_retried_and_counted(served):
    client, service = served
    backend = service.backend
    restarts, retries = backend.worker_restarts, backend.job_retries
    slow = {"code": "import time\ntime.sleep(1.5)\nprint(int(input()) * 2)", "tests": {"kind": "stdio", "cases": [
        {"input": "2", "output": "4"}]}}
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(client.post("/judge", json=slow).json()))
    thread.start()
    pool = backend._pool
    deadline = time.monotonic() + 30
    busy: list = []
    while not busy and time.monotonic() < deadline:  # wait until the job sits on a worker (slow under load)
        time.sleep(0.1)
        with pool._cond:
            busy = [w for slot, w in pool._workers.items() if slot not in pool._idle and w.alive()]
    assert busy, "the job never reached a worker"
    time.sleep(0.3)
    for w in busy:  # kill the worker running the job; the retry then runs on a live or fresh one
        os.killpg(w.proc.pid, signal.SIGKILL)
    thread.join(60)
    (res,) = result["results"]
    assert res["verdict"] == "AC", res  # not INTERNAL_ERROR: the job ran again on a fresh worker
    assert backend.job_retries == retries + 1
    assert backend.worker_restarts >= restarts + 1
    text = client.get("/metrics").text
    assert _sample(text, "er_sandbox_worker_restarts_total", worker=service.metrics.worker,
                   backend="process") == backend.worker_restarts
    assert _sample(text, "er_sandbox_worker_job_retries_total", worker=service.metrics.worker,
                   backend="process") == backend.job_retries
