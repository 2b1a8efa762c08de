"""The reward service on Ray Serve across a simulated 2-node cluster (head + a second node, separate processes).

One cluster for the module (it takes ~1 min to come up on a busy 2-core box): the same HTTP API through
Ray's proxy, both replicas serving, no submitted program reaching any Ray port, a short soak at 4x the measured
saturation throughput (everything answered: 200 with the right verdict or 503), and faults during a batch
(sandbox workers SIGKILLed, a replica SIGKILLed, the proxy restarted, a node removed: last, it is
destructive) with every submission answered by its own correct verdict.
"""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from tests.conftest import require_ray_serve

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

# a small admission queue per replica: under overload the replicas answer 503 + Retry-After themselves
SERVICE = {"judge_workers": 2, "math_workers": 1, "isolation": "process", "max_pending": 8}


@pytest.fixture(scope="module")
def cluster():
    require_ray_serve()
    from sandbox.cluster.local import LocalRayCluster

    c = LocalRayCluster(judge_nodes=2, dashboard=True, startup_timeout_s=180)
    try:
        c.start()
        c.deploy(service=SERVICE, health_check_period_s=2, max_queued_requests=16)
        yield c
    finally:
        c.stop()


def _workers_seen(url: str, tries: int = 40) -> set[str]:
    seen: set[str] = set()
    for _ in range(tries):  # the proxy spreads /metrics scrapes over replicas too
        for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
            if line.startswith("er_sandbox_queue_depth{"):
                seen.add(line.split('worker="', 1)[1].split('"', 1)[0])
        if len(seen) >= 2:
            break
    return seen


def test_same_api_through_the_proxy_and_both_nodes_serve(cluster):
    from sandbox.service.client import SandboxClient

    spec = {"kind": "stdio", "cases": [{"input": "2", "output": "4"}, {"input": "21", "output": "42"}]}
    with SandboxClient(cluster.url, batch_size=2, max_concurrency=4) as client:
        results = client.judge_batch([{"code": "print(2 * int(input()))", "tests": spec}] * 6
                                     + [{"code": "print(4)", "tests": spec}])
        assert [r.verdict.name for r in results] == ["AC"] * 6 + ["WA"]
        assert client.check_math("1/2", pred="0.5").correct
        health = client.health()
        assert health["ok"] and health["isolation"]["backend"] == "process"
        assert "net" in health["isolation"]["namespaces"], health  # programs get no network at all
    bad = httpx.post(f"{cluster.url}/judge", json={"code": "print(1)", "tests": {"kind": "nope"}}, timeout=30)
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_request" and "nope" in bad.json()["detail"]
    assert httpx.get(f"{cluster.url}/openapi.json", timeout=30).json()["info"]["title"].startswith("Elastic")
    assert len(_workers_seen(cluster.url)) == 2


def _host_addresses() -> list[str]:
    addresses = {"127.0.0.1"}
    try:
        addresses.add(socket.gethostbyname(socket.gethostname()))
    except OSError:
        pass
    return sorted(addresses)


def test_submitted_code_cannot_reach_any_ray_port(cluster):
    ports = sorted({port for node in cluster.nodes for port in node.ports.values()} | {cluster.http_port})
    hosts = _host_addresses()
    # control: from outside the sandbox these ports are open (so the check below can fail)
    with socket.create_connection(("127.0.0.1", cluster.gcs_port), timeout=5):
        pass
    with socket.create_connection(("127.0.0.1", cluster.head.ports["dashboard"]), timeout=5):
        pass
    probe = (
        "import os, socket\n"
        f"for host in {hosts!r}:\n"
        f"    for port in {ports!r}:\n"
        "        try:\n"
        "            socket.create_connection((host, port), timeout=1).close()\n"
        "            print('OPEN', host, port)\n"
        "        except OSError:\n"
        "            print('blocked')\n"
        "print(sorted(k for k in os.environ if k.startswith('RAY')))\n"
        "sockets = 0\n"
        "for fd in os.listdir('/proc/self/fd'):\n"
        "    try:\n"
        "        sockets += os.readlink('/proc/self/fd/' + fd).startswith('socket:')\n"
        "    except OSError:\n"
        "        pass\n"
        "print('inherited sockets', sockets)\n"
    )
    expected = "blocked\n" * (len(hosts) * len(ports)) + "[]\ninherited sockets 0\n"
    r = httpx.post(f"{cluster.url}/judge", timeout=120, json={
        "code": probe, "tests": {"kind": "stdio", "time_limit_s": 20, "cases": [{"input": "", "output": expected}]}})
    res = r.json()["results"][0]
    assert res["verdict"] == "AC", json.dumps(res["tests"], indent=1)[:3000]


def _gateway_pids(cluster) -> dict[str, int]:
    from sandbox.cluster.chaos import PROXY, REPLICA

    pids = {"proxy": cluster.processes(PROXY)[:1], "replica": cluster.processes(REPLICA)[:1]}
    return {name: found[0] for name, found in pids.items() if found}


def test_short_soak_at_4x_saturation_answers_everything(cluster):
    from sandbox.cluster.load import measure_saturation, soak

    saturation = measure_saturation(cluster.url, concurrency=8, duration_s=5)
    assert saturation["throughput_per_s"] > 0, saturation
    report = soak(cluster.url, rate_per_s=4 * saturation["throughput_per_s"], duration_s=20,
                  rss_pids=lambda: _gateway_pids(cluster), samples=6)
    print(json.dumps({"saturation": saturation, "soak": report.to_dict()}))
    assert report.lost == 0 and report.wrong == 0, report.problems
    assert report.answered == report.sent and report.ok > 0, report  # every request sent got a 200 or a 503
    proxy = [row["proxy"] for row in report.rss_mb if row.get("proxy")]
    assert proxy and max(proxy) < proxy[0] * 1.5 + 64, report.rss_mb  # flat, not growing with the load


@pytest.mark.parametrize("fault", ["worker_sigkill", "replica_sigkill", "gateway_restart", "node_removed"])
def test_fault_during_a_batch_loses_nothing(cluster, fault):
    from sandbox.cluster.chaos import batch_under_fault

    if fault != "node_removed":  # every fault but the last starts from two healthy replicas
        deadline = time.monotonic() + 120
        while len(_workers_seen(cluster.url, tries=10)) < 2 and time.monotonic() < deadline:
            time.sleep(1)
    report = batch_under_fault(cluster, fault, n=40, at_s=0.8)
    print(json.dumps(report.to_dict()))
    assert report.action.startswith(("SIGKILL", "removed")), report
    assert (report.answered, report.correct, report.lost, report.wrong) == (40, 40, 0, 0), report
    assert report.recovery_s is not None and report.recovery_s < 90, report
