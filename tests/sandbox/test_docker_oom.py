"""A worker container OOM-killed by the kernel in the middle of a batch: the job on it is retried on another
container, every submission gets its own correct verdict, and the pool replaces the dead container."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from docker_helpers import container_exec, judge_with, stdio, worker_image  # noqa: F401

pytestmark = [pytest.mark.docker, pytest.mark.slow]


_MARK_RUNNER = r"""
import os
for pid in os.listdir('/proc'):
    if pid.isdigit():
        try:
            cmd = open(f'/proc/{pid}/cmdline', 'rb').read()
        except OSError:
            continue
        if b'sandbox.runner' in cmd:
            open(f'/proc/{pid}/oom_score_adj', 'w').write('1000')  # raising needs no capability
"""


def _oom_kill(client, container_id: str) -> dict:
    """Make the kernel's OOM killer kill the container's runner.

    The runner is marked as the OOM killer's first choice, the container's memory limit is set just above what
    it uses now, and a process inside then allocates past it.
    """
    import json

    container_exec(container_id, _MARK_RUNNER)
    used = int(client.api.stats(container_id, stream=False)["memory_stats"]["usage"])
    limit = used + (24 << 20)
    proc = subprocess.run(["docker", "update", "--memory", str(limit), "--memory-swap", str(limit), container_id],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    subprocess.run(["docker", "exec", container_id, "python3", "-c", "b = bytearray(96 << 20)"],
                   capture_output=True, timeout=60)
    deadline = time.monotonic() + 30
    state: dict = {}
    while time.monotonic() < deadline:
        inspect = subprocess.run(["docker", "inspect", "--format", "{{json .State}}", container_id],
                                 capture_output=True, text=True, timeout=30)
        if inspect.returncode != 0:  # already removed by the pool
            return {"removed": True, **state}
        state = json.loads(inspect.stdout)
        if not state.get("Running"):
            return state
        time.sleep(0.2)
    return state


def test_oom_killed_container_loses_no_verdict(worker_image):
    from sandbox.isolation.docker import DockerBackend

    backend = DockerBackend(image=worker_image, pool_size=2, auto_build=False)
    try:
        judge = judge_with(backend, max_concurrency=2)
        subs = [stdio("import time\ntime.sleep(0.4)\nprint(int(input()) * 5)", [(str(i), str(5 * i))])
                for i in range(16)]
        victim = backend.container_ids()[0]
        state: dict = {}
        killer = threading.Thread(target=lambda: (time.sleep(1.0), state.update(_oom_kill(backend.client, victim))))
        killer.start()
        results = judge.judge_batch(subs)
        killer.join(60)
        wrong = [(i, r.verdict.name, r.error) for i, r in enumerate(results) if r.verdict.name != "AC"]
        assert not wrong, (wrong, state, backend.stats)
        assert state.get("OOMKilled") or state.get("removed"), state  # the kernel, not us, killed it
        assert backend.stats["recycled"] >= 1 and backend.stats["retried"] >= 1, backend.stats
        assert victim not in backend.container_ids()
        assert judge.judge(stdio("print(3)", [("", "3")])).verdict.name == "AC"  # the pool is whole again
    finally:
        backend.close()
