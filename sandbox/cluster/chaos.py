"""Faults injected into a :class:`~sandbox.cluster.local.LocalRayCluster` during a batch (tests, benchmarks).

Each fault is a function of the cluster that breaks one thing the way production breaks it:

- ``worker_sigkill``: SIGKILL every sandbox worker process of one replica (the jobs on them
  are retried by the backend on fresh workers).
- ``replica_sigkill``: SIGKILL one judge replica's process (Ray restarts it; its in-flight
  requests fail at the proxy and the client retries them elsewhere).
- ``gateway_restart``: SIGKILL Ray's HTTP proxy (Ray starts a new one; the client retries
  dropped connections).
- ``node_removed``: SIGKILL a whole non-head judge node (its replica is gone; the survivors
  take the load, the client retries what was in flight).

:func:`batch_under_fault` judges a batch of distinct submissions through
:class:`sandbox.service.client.SandboxClient`, injects the fault part-way, and checks that every
submission got exactly its own correct verdict; it reports how long the service took to
answer a fresh probe after the fault (recovery time).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from sandbox.cluster.local import LocalRayCluster

__all__ = ["FAULTS", "FaultReport", "batch_under_fault", "distinct_submissions"]

REPLICA = "ServeReplica:"
PROXY = "ProxyActor"
SANDBOX_WORKER = "sandbox.runner.job --serve"


def _kill(pids: list[int], what: str) -> str:
    if not pids:
        raise RuntimeError(f"no {what} process found to kill")
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return f"SIGKILL {what} pid(s) {pids}"


def worker_sigkill(cluster: LocalRayCluster) -> str:
    """Kill the sandbox workers of the first replica found."""
    replicas = cluster.processes(REPLICA)
    if not replicas:
        raise RuntimeError("no judge replica process found")
    workers = [p for p in cluster.processes(SANDBOX_WORKER) if _descends_from(p, replicas[0])]
    return _kill(workers, "sandbox worker")


def replica_sigkill(cluster: LocalRayCluster) -> str:
    """Kill one judge replica (the first found)."""
    return _kill(cluster.processes(REPLICA)[:1], "judge replica")


def gateway_restart(cluster: LocalRayCluster) -> str:
    """Kill Ray's HTTP proxy on the head (Ray's controller restarts it)."""
    return _kill(cluster.processes(PROXY), "HTTP proxy")


def node_removed(cluster: LocalRayCluster) -> str:
    """Kill the last non-head judge node like a lost host."""
    nodes = [n for n in cluster.nodes[1:] if n.judge and n.alive]
    if not nodes:
        raise RuntimeError("no non-head judge node to remove")
    cluster.remove_node(nodes[-1])
    return f"removed node {nodes[-1].name}"


FAULTS: dict[str, Callable[[LocalRayCluster], str]] = {
    "worker_sigkill": worker_sigkill, "replica_sigkill": replica_sigkill,
    "gateway_restart": gateway_restart, "node_removed": node_removed,
}


def _descends_from(pid: int, ancestor: int) -> bool:
    for _ in range(64):
        if pid == ancestor:
            return True
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                pid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except OSError:
            return False
        if pid <= 1:
            return False
    return False


def distinct_submissions(n: int, sleep_s: float = 0.2) -> list[dict[str, Any]]:
    """``n`` submissions, each with its own expected output (a mixed-up reply would be WA)."""
    code = f"import time\ntime.sleep({sleep_s})\nprint(int(input()) * 3)"
    return [{"code": code, "tests": {"kind": "stdio", "cases": [{"input": f"{i}", "output": f"{3 * i}"}]}}
            for i in range(n)]


@dataclass
class FaultReport:
    """What one batch under one fault gave."""

    fault: str
    action: str
    submissions: int
    answered: int
    correct: int
    lost: int
    wrong: int
    batch_wall_s: float
    recovery_s: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def _probe_until_ok(url: str, start: float, timeout_s: float) -> float | None:
    """Seconds from ``start`` until a fresh one-test judge request (no retries) is answered correctly."""
    import httpx

    probe = {"code": "print(7)", "tests": {"kind": "stdio", "cases": [{"input": "", "output": "7"}]}}
    deadline = start + timeout_s
    with httpx.Client(timeout=10) as http:
        while time.monotonic() < deadline:
            try:
                resp = http.post(f"{url}/judge", json=probe)
                if resp.status_code == 200 and resp.json()["results"][0]["verdict"] == "AC":
                    return time.monotonic() - start
            except (httpx.TransportError, ValueError, KeyError):
                pass
            time.sleep(0.1)
    return None


def batch_under_fault(cluster: LocalRayCluster, fault: str, *, n: int = 40, at_s: float = 0.8,
                      sleep_s: float = 0.2, client_options: dict[str, Any] | None = None,
                      recovery_timeout_s: float = 120.0) -> FaultReport:
    """Judge ``n`` distinct submissions while ``fault`` strikes ``at_s`` seconds in.

    Args:
        cluster: a deployed local cluster.
        fault: a key of :data:`FAULTS`.
        n: submissions in the batch.
        at_s: when the fault strikes after the batch starts.
        sleep_s: each submission's own run time.
        client_options: :class:`sandbox.service.client.SandboxClient` settings (default: batches of 2,
            6 in flight, 8 retries).
        recovery_timeout_s: how long to probe for recovery.

    Returns:
        The :class:`FaultReport` (``lost``: submissions without a result; ``wrong``: results that
        are not their own submission's AC).

    """
    from sandbox.service.client import SandboxClient, SandboxClientError

    options = {"batch_size": 2, "max_concurrency": 6, "max_retries": 8, "backoff_s": 0.25, "timeout_s": 120.0,
               **(client_options or {})}
    subs = distinct_submissions(n, sleep_s)
    outcome: dict[str, Any] = {}
    timing: dict[str, float | None] = {}

    def strike() -> None:
        time.sleep(at_s)
        fault_at = time.monotonic()
        outcome["action"] = FAULTS[fault](cluster)
        timing["recovery_s"] = _probe_until_ok(cluster.url, fault_at, recovery_timeout_s)

    injector = threading.Thread(target=strike, daemon=True)
    start = time.monotonic()
    injector.start()
    with SandboxClient(cluster.url, **options) as client:
        try:
            outcome["results"] = client.judge_batch(subs)
        except SandboxClientError as exc:
            outcome["error"] = exc
    wall = time.monotonic() - start
    injector.join(recovery_timeout_s + 30)
    results = outcome.get("results") or []
    correct = sum(1 for r in results if r.verdict.name == "AC" and r.passed == r.total == 1)
    recovery = timing.get("recovery_s")
    return FaultReport(fault=fault, action=outcome.get("action", "not struck: " + str(outcome.get("error"))),
                       submissions=n, answered=len(results), correct=correct, lost=n - len(results),
                       wrong=len(results) - correct, batch_wall_s=round(wall, 2),
                       recovery_s=None if recovery is None else round(recovery, 2))
