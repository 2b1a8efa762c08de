"""The reward service across many hosts, on Ray Serve (optional extra ``cluster``: ``pip install -e '.[cluster]'``).

- :mod:`sandbox.cluster.config`: :class:`ClusterConfig` (stdlib only).
- :mod:`sandbox.cluster.deployment`: the Ray Serve deployment: one replica of
  :func:`sandbox.service.server.create_app` per judge node, each owning that node's isolation pool,
  behind Ray's HTTP proxy; Ray restarts a replica whose health check fails or whose process dies.
- :mod:`sandbox.cluster.local`: :class:`LocalRayCluster`, a head and worker nodes as separate
  ``ray start`` processes on 127.0.0.1 (tests and benchmarks; brought down by process group).

The HTTP API is the one of :mod:`sandbox.service.server`; :class:`sandbox.service.client.SandboxClient` is
pointed at the proxy's URL. Deployment guide: ``docs/guides/reward-cluster.md``.
Nothing here imports Ray at module import time except :mod:`sandbox.cluster.deployment`.
"""

from sandbox.cluster.config import JUDGE_NODE_RESOURCE, ClusterConfig

__all__ = ["ClusterConfig", "JUDGE_NODE_RESOURCE"]
