"""The Ray Serve deployment of the reward service: one judge replica per judge node.

Each replica is :func:`sandbox.service.server.create_app` (the same FastAPI app as ``er sandbox
serve``, so the HTTP API, the limits, the error bodies and ``/metrics`` are the same),
running inside a Ray actor that holds one unit of the judge-node resource, and it owns that
node's isolation pool (``process``, or ``docker`` where the node has an engine). Ray's HTTP
proxy spreads requests over the replicas; a request waiting beyond ``max_queued_requests``
gets 503 (with ``Retry-After`` where Ray sets it), which :class:`sandbox.service.client.SandboxClient`
retries. Ray restarts a replica whose process dies or whose health check (the isolation
backend's own health report) fails.

Untrusted code never touches Ray: the replica hands jobs to the isolation backend's
worker processes, which start from a minimal environment (no ``RAY_*`` variables, no
inherited sockets) inside a network namespace (process backend) or a container with
``network_mode: none`` (docker backend), so no submitted program can reach the GCS, the
raylets, the dashboard or the proxy.

Ray itself is locked down with its token authentication (Ray >= 2.52): every node is started with
``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN_PATH`` naming the token file, and :func:`deploy` connects
with ``ClusterConfig.ray_token_file``. :func:`check_ray_auth` tells whether the cluster enforces it (a
connection without a token succeeded, or the dashboard answers without one) and :func:`deploy` warns
loudly when it does not. Callers of the service are authenticated by each replica's own
:class:`~sandbox.service.auth.BearerAuthMiddleware` (``service["api_key_file"]``, the same path on
every judge node), so the Serve path checks bearer keys exactly as ``er sandbox serve`` does.

This module imports Ray: install the extra ``cluster`` (``pip install -e '.[cluster]'``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from typing import Any

try:
    import ray
    from ray import serve
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("sandbox.cluster.deployment needs Ray Serve: pip install -e '.[cluster]' "
                      "(or pip install 'ray[serve]')") from exc

from sandbox.cluster.config import ClusterConfig

__all__ = ["JudgeReplica", "build_application", "deploy", "judge_nodes", "shutdown", "check_ray_auth", "connect",
           "use_ray_token", "RAY_AUTH_WARNING"]

_log = logging.getLogger("sandbox.cluster")

#: what :func:`deploy` prints when the cluster does not enforce Ray token authentication
RAY_AUTH_WARNING = """
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
WARNING: the Ray cluster at {address} does not enforce token authentication ({why}).
Anyone who reaches its GCS, dashboard or jobs API runs arbitrary code on every node (ShadowRay,
CVE-2023-48022). Restart every node with RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=/etc/er/ray_token
(the same token, chmod 600) and deploy with --ray-token-file /etc/er/ray_token; see docs/security.md.
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
"""


@serve.ingress()
class JudgeReplica:
    """One reward service (FastAPI app + isolation pool) inside a Ray Serve replica.

    Args:
        service_fields: :class:`sandbox.service.server.ServerConfig` fields.
        metrics_port: serve this replica's metrics on this port of its node too (0: off).
        metrics_host: interface of ``metrics_port``.

    """

    def __init__(self, service_fields: dict[str, Any], metrics_port: int = 0, metrics_host: str = "127.0.0.1") -> None:
        from sandbox.service.server import ServerConfig, create_app

        context = serve.get_replica_context()
        node = ray.get_runtime_context().get_node_id()[:8]
        # the ``worker`` label of this replica's metrics (sandbox.metrics)
        os.environ.setdefault("ER_SANDBOX_WORKER_ID", f"{node}/{context.replica_id.unique_id}")
        self.config = ServerConfig(**service_fields)
        self._asgi = create_app(self.config)
        self.service = self._asgi.state.service
        if metrics_port:  # one replica per node: a fixed port per node for Prometheus to scrape
            from prometheus_client import start_http_server

            start_http_server(metrics_port, addr=metrics_host, registry=self.service.metrics.registry)

    def __serve_build_asgi_app__(self) -> Any:
        return self._asgi

    async def check_health(self) -> None:
        """Ray's health probe: the isolation backend must be up (a failure gets the replica restarted).

        Raises:
            RuntimeError: the backend reports not ok (the report is in the message).

        """
        report = await asyncio.to_thread(lambda: dict(self.service.backend.health()))
        if not report.get("ok"):
            raise RuntimeError(f"isolation backend unhealthy: {report}")


def use_ray_token(path: str) -> None:
    """Make this process use the Ray token in ``path`` (the token never appears on a command line).

    Sets ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN_PATH`` (inherited by child processes) and refreshes
    Ray's cached config, which ``import ray`` already read, as Ray's own token set-up does.
    """
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = os.path.abspath(path)
    os.environ.pop("RAY_AUTH_TOKEN", None)
    try:
        from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError):  # pragma: no cover - a Ray without these reads the variables at init
        pass


def connect(config: ClusterConfig) -> Any:
    """Connect this process to the cluster (with the Ray token of ``config.ray_token_file`` when given).

    Returns:
        Ray's context (``dashboard_url`` among others), or None when already connected.

    """
    if ray.is_initialized():
        return None
    if config.ray_token_file:
        use_ray_token(config.ray_token_file)
    return ray.init(address=config.address, log_to_driver=False, logging_level=logging.WARNING)


def _token_mode() -> bool:
    try:
        from ray._private.authentication.authentication_utils import is_token_auth_enabled
    except ImportError:  # Ray < 2.52 has no token authentication at all
        return False
    return bool(is_token_auth_enabled())


def _dashboard_open(dashboard_url: str) -> bool | None:
    """Whether the dashboard answers an unauthenticated request (None: not reachable from here)."""
    import httpx

    url = dashboard_url if dashboard_url.startswith("http") else f"http://{dashboard_url}"
    try:
        resp = httpx.get(f"{url}/api/version", timeout=10)
    except httpx.HTTPError:
        return None
    return resp.status_code < 400


def check_ray_auth(config: ClusterConfig, context: Any = None) -> str | None:
    """Tell whether the cluster enforces Ray token authentication; warn loudly when it does not.

    Args:
        config: the cluster settings (``address``, ``ray_token_file``).
        context: Ray's context from :func:`connect` (connects when None and not connected).

    Returns:
        None when token authentication is on; else the warning text (also printed to stderr and logged).

    """
    context = context if context is not None else connect(config)
    dashboard = getattr(context, "dashboard_url", "") or ""
    why = None
    if not _token_mode():
        why = "this process connected without a token and was let in"
    elif dashboard and _dashboard_open(dashboard):
        why = f"its dashboard {dashboard} answers requests without a token"
    if why is None:
        return None
    text = RAY_AUTH_WARNING.format(address=config.address, why=why)
    print(text, file=sys.stderr, flush=True)
    _log.warning("Ray token authentication is off on %s: %s", config.address, why)
    return text


def judge_nodes(resource: str) -> int:
    """Units of ``resource`` on the cluster's live nodes (one judge replica each)."""
    return int(sum(n["Resources"].get(resource, 0) for n in ray.nodes() if n.get("Alive")))


def build_application(config: ClusterConfig, num_replicas: int) -> Any:
    """The bound Serve application for ``config`` with ``num_replicas`` replicas."""
    deployment: Any = serve.deployment(JudgeReplica, name="judge")
    deployment = deployment.options(
        num_replicas=num_replicas,
        ray_actor_options={"num_cpus": 0, "resources": {config.judge_node_resource: 1}},
        max_ongoing_requests=config.max_ongoing_requests,
        max_queued_requests=config.max_queued_requests,
        backpressure_config={"status_code": 503, "retry_after_s": config.retry_after_s},
        health_check_period_s=config.health_check_period_s,
        health_check_timeout_s=config.health_check_timeout_s,
    )
    service = config.service if isinstance(config.service, dict) else {}  # a dict after __post_init__
    return deployment.bind(dict(service), config.metrics_port, config.metrics_host)


def deploy(config: ClusterConfig, *, wait_judge_nodes: int = 0, timeout_s: float = 300.0) -> str:
    """Connect to the Ray cluster, start Serve's HTTP proxy and (re)deploy the reward service.

    Args:
        config: the cluster settings.
        wait_judge_nodes: wait until this many judge nodes are alive before deploying.
        timeout_s: how long to wait for the nodes.

    Returns:
        The proxy's URL.

    Raises:
        RuntimeError: no judge node (none advertises ``config.judge_node_resource``), or fewer than
            ``wait_judge_nodes`` within ``timeout_s``.
        KeyFileError: ``service["api_key_file"]`` is missing, readable by others or malformed on this node.

    A cluster without Ray token authentication is deployed to, after a loud warning (:func:`check_ray_auth`).

    """
    service = config.service if isinstance(config.service, dict) else {}
    if service.get("api_key_file"):  # checked here (this node's copy) before every replica reads its own
        from sandbox.service.auth import KeyRing

        KeyRing(service["api_key_file"])
    check_ray_auth(config, connect(config))
    deadline = time.monotonic() + timeout_s
    while judge_nodes(config.judge_node_resource) < wait_judge_nodes and time.monotonic() < deadline:
        time.sleep(0.5)
    available = judge_nodes(config.judge_node_resource)
    if available < max(1, wait_judge_nodes):
        raise RuntimeError(f"{available} judge node(s) alive, need {max(1, wait_judge_nodes)}: start nodes with "
                           f"ray start --resources '{{\"{config.judge_node_resource}\": 1}}'")
    replicas = config.num_replicas or available
    http: dict[str, Any] = {"host": config.http_host, "port": config.http_port, "location": config.proxy_location}
    if config.tls_certfile:  # Serve's proxy terminates TLS itself (Ray >= 2.4x HTTPOptions)
        http.update(ssl_certfile=os.path.abspath(config.tls_certfile), ssl_keyfile=os.path.abspath(config.tls_keyfile))
    serve.start(http_options=http)
    serve.run(build_application(config, replicas), name=config.app_name, route_prefix="/")
    return config.url


def shutdown(config: ClusterConfig) -> None:
    """Delete the reward service application (the Ray cluster stays up)."""
    connect(config)
    serve.delete(config.app_name)
