"""Settings of the Ray Serve reward cluster (stdlib only).

Every :class:`ClusterConfig` field mirrors an environment variable ``ER_CLUSTER_<FIELD>``;
``service`` holds :class:`sandbox.service.server.ServerConfig` fields for every replica.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ClusterConfig", "JUDGE_NODE_RESOURCE", "PROXY_LOCATIONS"]

#: the custom Ray resource a node advertises to host one judge replica (``ray start --resources``)
JUDGE_NODE_RESOURCE = "er_judge_node"
PROXY_LOCATIONS = ("HeadOnly", "EveryNode", "Disabled")


@dataclass
class ClusterConfig:
    """How the reward service is deployed on a Ray cluster.

    > Parameters that control placement

    Attributes:
        address: Ray cluster address (``auto``: the local node's cluster; or ``host:port`` of the head's GCS).
        num_replicas: judge replicas; 0 means one per node that advertises ``judge_node_resource``.
        judge_node_resource: custom resource that marks judge nodes (one replica per unit); GPU nodes
            of the trainer do not advertise it, so no untrusted code runs there.
        app_name: Ray Serve application name.

    > Parameters that control the HTTP proxy

    Attributes:
        http_host: interface Ray's HTTP proxy binds (localhost unless told otherwise).
        http_port: its port.
        proxy_location: ``HeadOnly`` (one proxy on the head), ``EveryNode`` (one per node: put a load
            balancer in front) or ``Disabled``.

    > Parameters that control back-pressure and restarts

    Attributes:
        max_ongoing_requests: requests one replica works on at once (each may be a batch).
        max_queued_requests: requests waiting for a replica before the proxy answers 503.
        retry_after_s: the ``Retry-After`` of that 503.
        health_check_period_s: how often Ray calls the replica's health check (backend + math probe).
        health_check_timeout_s: a health check slower than this counts as failed (replica restarted).

    > Parameters of monitoring

    Attributes:
        metrics_port: port where each replica serves its Prometheus metrics on its node (0: off).
        metrics_host: interface of that port.

    > Parameters of security (see ``docs/security.md``)

    Attributes:
        ray_token_file: file holding the Ray cluster's auth token (``chmod 600``; the same token on every
            node, started with ``RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=FILE``). The deployer connects
            with it; a cluster that accepts a connection without a token gets a loud warning.
        insecure_no_auth: accept a non-loopback ``http_host`` whose replicas have no ``api_key_file``.
        tls_certfile: PEM certificate (chain) for Serve's HTTP proxy to serve HTTPS with (empty: plain HTTP;
            the file must be at that path on every node that runs a proxy).
        tls_keyfile: its private key (not world-readable).

    > Parameters of each replica's service

    Attributes:
        service: :class:`sandbox.service.server.ServerConfig` fields (isolation, judge_workers, limits...) as a
            dict or a JSON object string.

    """

    address: str = field(default="auto", metadata={"help": "Ray address: 'auto' or host:port of the head's GCS."})
    num_replicas: int = field(default=0, metadata={
        "help": "Judge replicas; 0 = one per node advertising judge_node_resource."})
    judge_node_resource: str = field(default=JUDGE_NODE_RESOURCE, metadata={
        "help": "Custom Ray resource that marks judge nodes (ray start --resources '{\"er_judge_node\": 1}')."})
    app_name: str = field(default="er-judge", metadata={"help": "Ray Serve application name."})
    http_host: str = field(default="127.0.0.1", metadata={
        "help": "Interface of Ray's HTTP proxy; 0.0.0.0 exposes the judge to the network."})
    http_port: int = field(default=8000, metadata={"help": "Port of Ray's HTTP proxy."})
    proxy_location: str = field(default="HeadOnly", metadata={
        "help": "HeadOnly | EveryNode (load balancer in front) | Disabled."})
    max_ongoing_requests: int = field(default=64, metadata={
        "help": "Requests handed to one replica at once; keep it above the replica's own max_pending so that "
                "the replica sheds load itself (a cheap 503 + Retry-After) instead of requests queuing unseen."})
    max_queued_requests: int = field(default=512, metadata={
        "help": "Requests waiting for a replica before the proxy answers 503 (clients retry)."})
    retry_after_s: float = field(default=1.0, metadata={
        "help": "Retry-After (s) of the proxy's 503 when max_queued_requests is reached."})
    health_check_period_s: float = field(default=5.0, metadata={"help": "Replica health check period (s)."})
    health_check_timeout_s: float = field(default=30.0, metadata={"help": "Replica health check timeout (s)."})
    metrics_port: int = field(default=0, metadata={
        "help": "Port on every judge node where its replica serves /metrics for Prometheus (0: off; the proxy's "
                "/metrics reaches one replica per scrape)."})
    metrics_host: str = field(default="127.0.0.1", metadata={"help": "Interface of that metrics port."})
    ray_token_file: str = field(default="", metadata={
        "help": "Ray auth token file (chmod 600, same token on every node; nodes started with RAY_AUTH_MODE=token "
                "RAY_AUTH_TOKEN_PATH=FILE). Without it, a cluster without token auth is only warned about."})
    insecure_no_auth: bool = field(default=False, metadata={
        "help": "Expose http_host beyond loopback although the replicas have no api_key_file."})
    tls_certfile: str = field(default="", metadata={
        "help": "PEM certificate for Serve's HTTP proxy: HTTPS on http_port (empty: plain HTTP)."})
    tls_keyfile: str = field(default="", metadata={"help": "Private key of tls_certfile (not world-readable)."})
    service: dict[str, Any] | str = field(default="{}", metadata={
        "help": "JSON object of ServerConfig fields for every replica, e.g. '{\"judge_workers\": 16}'."})

    def __post_init__(self) -> None:
        if isinstance(self.service, str):
            try:
                self.service = json.loads(self.service or "{}")
            except json.JSONDecodeError as exc:
                raise ValueError(f"service must be a JSON object, got {self.service!r:.100}: {exc}") from None
        if not isinstance(self.service, dict):
            raise ValueError(f"service must be a JSON object such as '{{\"judge_workers\": 8}}', got {self.service!r}")
        if self.proxy_location not in PROXY_LOCATIONS:
            raise ValueError(f"proxy_location={self.proxy_location!r} unknown; use one of {PROXY_LOCATIONS}")
        for name in ("max_ongoing_requests", "max_queued_requests"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} must be >= 1")
        if self.num_replicas < 0:
            raise ValueError(f"num_replicas={self.num_replicas!r} must be >= 0 (0: one per judge node)")
        if not 0 <= self.metrics_port < 65536:
            raise ValueError(f"metrics_port={self.metrics_port!r} must be in 0..65535 (0: off)")
        if not 0 < self.http_port < 65536:
            raise ValueError(f"http_port={self.http_port!r} must be in 1..65535")
        if not (self.health_check_period_s > 0 and self.health_check_timeout_s > 0):
            raise ValueError(f"health_check_period_s={self.health_check_period_s!r} and health_check_timeout_s="
                             f"{self.health_check_timeout_s!r} must be > 0")
        from sandbox.service.auth import KeyFileError, check_bind, check_private_file
        from sandbox.service.config import ServerConfig

        try:  # fail here, not in every replica
            replica = ServerConfig(**self.service)
        except TypeError as exc:
            raise ValueError(f"service={self.service!r} has a field ServerConfig does not know: {exc}") from None
        if not replica.api_key_file:  # the proxy, not the replica, is what binds http_host
            check_bind(self.http_host, None, self.insecure_no_auth, what="the reward cluster's HTTP proxy",
                       key_flag='--service \'{"api_key_file": "/etc/er/keys"}\'', insecure_flag="--insecure-no-auth")
        if self.tls_certfile or self.tls_keyfile:
            from sandbox.service.auth import check_tls

            check_tls(self.tls_certfile, self.tls_keyfile)
        if self.ray_token_file:
            try:
                check_private_file(self.ray_token_file, "Ray token file")
            except KeyFileError as exc:
                raise ValueError(str(exc).replace("one key per line", "the token on one line")) from None

    @property
    def url(self) -> str:
        """The proxy's base URL (what :class:`sandbox.service.client.SandboxClient` is pointed at)."""
        host = "127.0.0.1" if self.http_host in ("0.0.0.0", "") else self.http_host
        return f"{'https' if self.tls_certfile else 'http'}://{host}:{self.http_port}"
