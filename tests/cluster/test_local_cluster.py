"""The local test cluster's ports: never one port for two Ray components, and a node that lost a port to
another process between the pick and Ray's bind is started again on fresh ports (a CI run failed on
the first: Ray's object manager and client server were handed one port).
"""

from __future__ import annotations

import socket
import time

import pytest

from sandbox.cluster.local import LocalRayCluster, _held_elsewhere, _PortPool
from tests.conftest import require_ray_serve


def test_the_port_pool_never_hands_a_port_out_twice():
    pool = _PortPool()
    ports = [p for _ in range(40) for p in pool.take(8)]
    assert len(ports) == len(set(ports)) == 320
    assert pool.taken == set(ports)


def test_the_port_pool_skips_ports_the_cluster_already_took(monkeypatch):
    """The kernel may hand a port out again once its socket is closed; the pool must not."""
    pool = _PortPool()
    first = pool.take(3)
    handed = iter(first + [first[0], 40001, 40002])  # the kernel's next answers repeat the first batch

    class _Fake:
        def __init__(self, *a):
            self.port = next(handed)

        def bind(self, addr):
            pass

        def getsockname(self):
            return ("127.0.0.1", self.port)

        def close(self):
            pass

    monkeypatch.setattr("sandbox.cluster.local.socket.socket", _Fake)
    assert pool.take(2) == [40001, 40002]


def test_held_elsewhere_names_only_ports_something_listens_on():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = held.getsockname()[1]
        free = _PortPool().take(1)[0]
        assert _held_elsewhere([busy, free]) == [busy]


@pytest.mark.cluster
def test_a_node_refused_for_its_ports_is_started_again_on_fresh_ports():
    """The CI failure replayed: the head's first attempt gets one port for two components, Ray refuses it,
    the cluster starts it again on fresh ports. (A port stolen by another process takes the same path,
    found by ``_held_elsewhere``, but Ray needs 30 s to give up on it, so it is not replayed here.)"""
    require_ray_serve()
    cluster = LocalRayCluster(judge_nodes=1, dashboard=False)
    take, batches = cluster._ports.take, []

    def take_with_a_duplicate(n):
        ports = take(n)
        if not batches:
            ports[1] = ports[0]  # object_manager == node_manager
        batches.append(ports)
        return ports

    cluster._ports.take = take_with_a_duplicate
    try:
        cluster.start()
        assert cluster.head.alive and "Ray runtime started" in cluster.head.log_tail(100_000)
        assert len(batches) == 3  # the first attempt's ports, a fresh GCS port, the second attempt's ports
        assert len(set(cluster.head.ports.values())) == len(cluster.head.ports)
        assert cluster.head.ports["gcs"] == cluster.gcs_port and len(cluster.nodes) == 1
    finally:
        cluster.stop()


@pytest.mark.cluster
def test_a_node_failing_for_another_reason_is_not_retried():
    require_ray_serve()
    cluster = LocalRayCluster(judge_nodes=1, dashboard=False, object_store_mb=1)  # below Ray's minimum
    take, batches = cluster._ports.take, []
    cluster._ports.take = lambda n: batches.append(n) or take(n)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="ray node head exited") as err:
        cluster.start()
    assert "object_store_memory" in str(err.value) or "object store" in str(err.value).lower()
    assert len(batches) == 1 and time.monotonic() - t0 < 60
