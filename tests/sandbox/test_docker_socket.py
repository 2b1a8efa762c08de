"""Compose-style workers: sandbox.runner.socket_server in locked-down containers + SocketBackend on the host.

The workers run exactly as in docker-compose.yml (no network, read-only, few capabilities), with the
socket directory bind-mounted from a host temp dir instead of a named volume.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import threading
import time
import uuid

import pytest
from docker_helpers import execute, judge_with, stdio, worker_image  # noqa: F401

from sandbox.core.errors import BackendUnavailable
from sandbox.core.verdicts import Verdict
from sandbox.isolation.docker import RUNNER_CAPS
from sandbox.isolation.socket import SocketBackend
from sandbox.runner.socket_server import ping

pytestmark = pytest.mark.docker
GATEWAY_GID = 10001


def _start_worker(image: str, socket_dir: str, name: str) -> str:
    caps = [arg for cap in RUNNER_CAPS for arg in ("--cap-add", cap)]
    argv = ["docker", "run", "-d", "--rm", "--name", name, "--hostname", name, "--network", "none", "--ipc", "none",
            "--read-only", "--tmpfs", "/tmp:rw,noexec,nosuid,nodev,size=256m,mode=0711", "--cap-drop", "ALL", *caps,
            "--security-opt", "no-new-privileges", "--pids-limit", "256", "--memory", "1g", "--init",
            "-v", f"{socket_dir}:/run/er-sandbox", image,
            "python3", "-m", "sandbox.runner.socket_server", "--socket-dir", "/run/er-sandbox", "--socket-gid",
            str(GATEWAY_GID)]
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    path = os.path.join(socket_dir, f"{name}.sock")
    end = time.monotonic() + 30
    while time.monotonic() < end:
        try:
            ping(path, timeout_s=2)
            return path
        except (OSError, ValueError):
            time.sleep(0.1)
    raise AssertionError(f"worker {name} did not answer on {path}")


@pytest.fixture(scope="module")
def workers(worker_image, tmp_path_factory):
    socket_dir = str(tmp_path_factory.mktemp("er-sockets"))
    names = [f"er-test-worker-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    try:
        paths = [_start_worker(worker_image, socket_dir, n) for n in names]
        yield {"dir": socket_dir, "names": names, "paths": paths}
    finally:
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True, timeout=60)


@pytest.fixture()
def backend(workers):
    return SocketBackend(socket_dir=workers["dir"], wait_for_worker_s=10)


def test_verdicts_through_the_socket(backend):
    judge = judge_with(backend)
    assert judge.judge(stdio("print(int(input()) + 1)", [("1", "2"), ("41", "42")])).verdict is Verdict.AC
    assert judge.judge(stdio("print(0)", [("1", "2")])).verdict is Verdict.WA
    assert judge.judge(stdio("while True:\n    pass", [("", "")])).verdict is Verdict.TLE
    assert backend.stats["jobs"] == 3


def test_health_pings_every_worker(backend, workers):
    health = backend.health()
    assert health["ok"] and health["workers"] == 2 and health["alive"] == 2, health
    assert subprocess.run(["docker", "exec", workers["names"][0], "python3", "-m", "sandbox.runner.socket_server", "--check",
                           "--name", workers["names"][0]], capture_output=True).returncode == 0


def test_socket_permissions_admit_only_root_and_the_gateway_group(workers):
    st_dir = os.stat(workers["dir"])
    assert stat.S_IMODE(st_dir.st_mode) == 0o750 and (st_dir.st_uid, st_dir.st_gid) == (0, GATEWAY_GID)
    for path in workers["paths"]:
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == GATEWAY_GID


def test_program_cannot_reach_its_own_worker_socket(backend, workers):
    source = ("import os, socket\nout = []\n"
              "for p in ['/run/er-sandbox'] + ['/run/er-sandbox/' + n + '.sock' for n in %r]:\n"
              "    try:\n"
              "        if p.endswith('.sock'):\n"
              "            s = socket.socket(socket.AF_UNIX); s.connect(p); out.append('connected')\n"
              "        else:\n"
              "            os.listdir(p); out.append('listed')\n"
              "    except OSError as e:\n"
              "        out.append(type(e).__name__)\n"
              "print(' '.join(out))") % (workers["names"],)
    out = execute(backend, {"source": source, "tests": [{"stdin": ""}]})
    assert out["tests"][0]["stdout"].split() == ["PermissionError"] * 3, out["tests"][0]


def test_concurrent_jobs_use_both_workers_and_queue_behind_busy_ones(workers):
    # wait_for_worker_s bounds waiting for an *unreachable* cluster; busy workers are simply queued for
    backend = SocketBackend(socket_dir=workers["dir"], wait_for_worker_s=0.05)
    results = []

    def run():
        source = "import os, time\ntime.sleep(0.3)\nprint(os.getuid())"
        out = execute(backend, {"source": source, "tests": [{"stdin": ""}]})
        results.append(out["tests"][0])

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    uids = {int(r["stdout"]) for r in results}
    assert len(results) == 6 and all(r["status"] == "OK" for r in results)
    assert len(uids) == 2, "each worker runs programs as its own uid; both should have been used"


def test_worker_killed_mid_job_is_retried_elsewhere(worker_image, tmp_path):
    socket_dir = str(tmp_path)
    names = [f"er-test-worker-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    try:
        for n in names:
            _start_worker(worker_image, socket_dir, n)
        backend = SocketBackend(socket_dir=socket_dir, wait_for_worker_s=5)
        box = {}
        t = threading.Thread(target=lambda: box.setdefault("out", execute(backend, 
            {"source": "import time\ntime.sleep(1.5)\nprint('done')", "tests": [{"stdin": ""}]})))
        t.start()
        time.sleep(0.5)
        busy = next(iter(backend._busy))
        subprocess.run(["docker", "kill", os.path.basename(busy)[:-5]], capture_output=True, check=True)
        t.join(30)
        assert box["out"]["tests"][0]["stdout"] == "done\n"
        assert backend.stats["hangups"] == 1 and backend.stats["retried"] == 1
    finally:
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True, timeout=60)


def test_no_worker_is_backend_unavailable(tmp_path):
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp_path / "gone.sock"))  # a socket file nobody listens on (a stopped worker's leftover)
    stale.close()
    backend = SocketBackend(socket_dir=str(tmp_path), wait_for_worker_s=0.5)
    with pytest.raises(BackendUnavailable, match="no sandbox worker reachable"):
        execute(backend, {"source": "print(1)", "tests": [{"stdin": ""}]})
    assert backend.health()["ok"] is False
