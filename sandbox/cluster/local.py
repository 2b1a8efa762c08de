"""A Ray cluster of several nodes on this machine, for tests and benchmarks (127.0.0.1 only).

:class:`LocalRayCluster` starts a head and worker nodes as separate ``ray start --block``
processes, each in a process group of its own, all bound to 127.0.0.1 with ports picked
free (so it never collides with another Ray on the host). A node is "removed" by killing its
process group (SIGKILL: what a lost host looks like to the cluster); :meth:`LocalRayCluster.stop`
kills every group it started and nothing else (it never runs ``ray stop``, which kills every
Ray process of the machine).

Each node advertises :data:`~sandbox.cluster.config.JUDGE_NODE_RESOURCE` (one judge replica)
unless started with ``judge=False`` (a stand-in for a trainer's GPU node).

Ray token authentication is on by default (``auth=True``): a random token in a ``chmod 600`` file of
the cluster's work directory, every node started with ``RAY_AUTH_MODE=token`` and
``RAY_AUTH_TOKEN_PATH`` naming it (as the deployment guide does on real hosts), the dashboard on
127.0.0.1, and :meth:`LocalRayCluster.deploy` passing ``--ray-token-file``. ``auth=False`` starts an
unauthenticated cluster (``RAY_AUTH_MODE=disabled``), for tests of the warning.

Example:
    >>> with LocalRayCluster(judge_nodes=2) as cluster:            # doctest: +SKIP
    ...     cluster.deploy(service={"judge_workers": 2})
    ...     SandboxClient(cluster.url).health()["ok"]
    True

"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.cluster.config import JUDGE_NODE_RESOURCE

__all__ = ["LocalRayCluster", "RayNode", "ray_executable"]

_REPO_ROOT = Path(__file__).resolve().parents[2]


class _PortPool:
    """Free 127.0.0.1 ports, each handed out once per cluster.

    A batch is picked with all its sockets bound at the same time, so the kernel cannot hand the
    same port out twice within it (picking one port, closing it, then picking the next can: that
    gave Ray's object manager and client server one port), and no port already taken by this
    cluster is handed out again. Another process can still bind a port between the pick and
    Ray's own bind; :meth:`LocalRayCluster._start_and_wait` retries a node that lost that race.
    """

    def __init__(self) -> None:
        self.taken: set[int] = set()

    def take(self, n: int) -> list[int]:
        sockets: list[socket.socket] = []
        ports: list[int] = []
        try:
            while len(ports) < n:
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
                if port not in self.taken:
                    ports.append(port)
                    self.taken.add(port)
        finally:
            for sock in sockets:
                sock.close()
        return ports


#: What ``ray start`` prints when two of its components were given one port.
_DUPLICATE_PORT_MARKER = "is trying to use a port number"
_START_ATTEMPTS = 3


def _held_elsewhere(ports: list[int]) -> list[int]:
    """Those of ``ports`` that something else listens on (a bind with SO_REUSEADDR fails)."""
    held = []
    for port in ports:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                held.append(port)
    return held


def ray_executable() -> str:
    """The ``ray`` CLI of this interpreter's environment.

    Raises:
        ImportError: Ray is not installed (names the extra to install).

    """
    candidate = Path(sys.executable).with_name("ray")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("ray")
    if found is None:
        raise ImportError("the reward cluster needs Ray: pip install -e '.[cluster]' (or pip install 'ray[serve]')")
    return found


@dataclass
class RayNode:
    """One ``ray start --block`` process group."""

    name: str
    proc: subprocess.Popen
    log_path: Path
    ports: dict[str, int] = field(default_factory=dict)
    judge: bool = True

    @property
    def alive(self) -> bool:
        """Whether the node's ``ray start`` process still runs."""
        return self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the node's whole process group (raylet, workers, replicas, sandbox workers)."""
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def log_tail(self, n_bytes: int = 2000) -> str:
        """The end of the node's ``ray start`` output."""
        try:
            return self.log_path.read_text(errors="replace")[-n_bytes:]
        except OSError:
            return ""


def _process_table() -> dict[int, tuple[int, int, str]]:
    """``pid -> (ppid, pgid, command line)`` from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        table[int(entry)] = (int(fields[1]), int(fields[2]), cmd)
    return table


class LocalRayCluster:
    """A head plus worker nodes as separate processes on 127.0.0.1.

    Args:
        judge_nodes: nodes that host a judge replica, the head included when ``head_is_judge``.
        head_is_judge: whether the head advertises the judge resource too.
        cpus_per_node: ``--num-cpus`` of each node (Ray's accounting only: judging runs in the
            isolation backend's own processes).
        object_store_mb: object store size per node (the judge moves little through it).
        dashboard: start the dashboard on the head (its port is then in ``ports``).
        startup_timeout_s: how long to wait for each node and for a deployment.
        auth: Ray token authentication (token file at ``token_file``); False: ``RAY_AUTH_MODE=disabled``.

    """

    def __init__(self, judge_nodes: int = 2, *, head_is_judge: bool = True, cpus_per_node: int = 1,
                 object_store_mb: int = 80, dashboard: bool = True, startup_timeout_s: float = 120.0,
                 auth: bool = True) -> None:
        if judge_nodes < 1:
            raise ValueError(f"judge_nodes={judge_nodes} must be >= 1")
        self.judge_nodes, self.head_is_judge = judge_nodes, head_is_judge
        self.cpus_per_node, self.object_store_mb = cpus_per_node, object_store_mb
        self.dashboard, self.startup_timeout_s = dashboard, startup_timeout_s
        self.workdir = Path(tempfile.mkdtemp(prefix="er-ray-"))
        self._ports = _PortPool()
        self.gcs_port, self.http_port = self._ports.take(2)
        self.nodes: list[RayNode] = []
        self._counter = 0
        self.deploy_output = ""
        self.scheme = "http"
        self.auth = auth
        self.token_file: Path | None = None
        if auth:  # the token lives in a file only its owner reads; never on a command line
            self.token_file = self.workdir / "ray_token"
            fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))

    # ------------------------------------------------------------------ nodes
    @property
    def address(self) -> str:
        """The head's GCS address (``ray.init(address=...)``)."""
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def url(self) -> str:
        """The HTTP proxy's URL once deployed (``https://`` after a deploy with ``tls_certfile``)."""
        return f"{self.scheme}://127.0.0.1:{self.http_port}"

    @property
    def head(self) -> RayNode:
        """The head node."""
        return self.nodes[0]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH")]))
        env.update({"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0", "PYTHONUNBUFFERED": "1",
                    # one proxy on the head: without this it sends everything to the head's own replica
                    "RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING": "0"})
        env.pop("RAY_AUTH_TOKEN", None)
        if self.token_file is not None:
            env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_file)})
        else:  # explicit: Ray >= 2.59 turns token auth on by itself when it finds ~/.ray/auth_token
            env.update({"RAY_AUTH_MODE": "disabled"})
            env.pop("RAY_AUTH_TOKEN_PATH", None)
        return env

    @property
    def token(self) -> str:
        """The Ray auth token (tests send it to the dashboard); empty without ``auth``."""
        return self.token_file.read_text().strip() if self.token_file is not None else ""

    def _start(self, head: bool, judge: bool) -> RayNode:
        names = ["node_manager", "object_manager", "metrics_export", "dashboard_agent_listen",
                 "dashboard_agent_grpc", "runtime_env_agent"]
        if head:
            names += ["client_server"] + (["dashboard"] if self.dashboard else [])
        ports = dict(zip(names, self._ports.take(len(names)), strict=True))
        argv = [ray_executable(), "start", "--block", "--disable-usage-stats", "--node-ip-address", "127.0.0.1",
                "--num-cpus", str(self.cpus_per_node), "--object-store-memory", str(self.object_store_mb << 20),
                "--node-manager-port", str(ports["node_manager"]), "--object-manager-port",
                str(ports["object_manager"]), "--metrics-export-port", str(ports["metrics_export"]),
                "--dashboard-agent-listen-port", str(ports["dashboard_agent_listen"]),
                "--dashboard-agent-grpc-port", str(ports["dashboard_agent_grpc"]),
                "--runtime-env-agent-port", str(ports["runtime_env_agent"]),
                "--resources", json.dumps({JUDGE_NODE_RESOURCE: 1} if judge else {})]
        if head:
            ports["gcs"] = self.gcs_port
            argv += ["--head", "--port", str(self.gcs_port), "--ray-client-server-port", str(ports["client_server"]),
                     "--temp-dir", str(self.workdir / "ray")]
            if self.dashboard:
                argv += ["--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port",
                         str(ports["dashboard"])]
            else:
                argv += ["--include-dashboard", "false"]
        else:
            argv += ["--address", self.address]
        name = "head" if head else f"node{self._counter}"
        self._counter += 1
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, env=self._env(), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, cwd=str(self.workdir))
        node = RayNode(name, proc, log_path, ports, judge)
        self.nodes.append(node)
        return node

    def _wait_started(self, node: RayNode) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if not node.alive:
                raise RuntimeError(f"ray node {node.name} exited ({node.proc.returncode}): {node.log_tail()}")
            if "Ray runtime started" in node.log_tail(100_000):
                return
            time.sleep(0.25)
        raise RuntimeError(f"ray node {node.name} did not start within {self.startup_timeout_s} s: {node.log_tail()}")

    def _start_and_wait(self, head: bool, judge: bool) -> RayNode:
        """Start a node and wait for it.

        A node that exits because one of its ports was taken by another process between the pick
        and Ray's bind (something else now listens there) is started again on fresh ports, at most
        ``_START_ATTEMPTS`` times; any other failure raises at once.
        """
        for attempt in range(1, _START_ATTEMPTS + 1):
            node = self._start(head=head, judge=judge)
            try:
                self._wait_started(node)
                return node
            except RuntimeError:
                if node.alive or attempt == _START_ATTEMPTS:
                    raise
                self.remove_node(node)  # whatever of it started before it failed
                own = [p for k, p in node.ports.items() if k != "gcs" or head]
                clash = _DUPLICATE_PORT_MARKER in node.log_tail(100_000) or _held_elsewhere(own)
                if not clash:
                    raise
                self.nodes.remove(node)
                if head:
                    self.gcs_port = self._ports.take(1)[0]
        raise AssertionError("unreachable")

    def add_node(self, judge: bool = True) -> RayNode:
        """Start one more worker node and wait until its ``ray start`` reports it joined."""
        return self._start_and_wait(head=False, judge=judge)

    def remove_node(self, node: RayNode) -> None:
        """Kill ``node`` like a lost host (SIGKILL to its process group); the cluster sees it die."""
        node.kill(signal.SIGKILL)
        try:
            node.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass

    def start(self) -> "LocalRayCluster":
        """Start the head, then the other judge nodes. On failure everything started is brought down."""
        try:
            self._start_and_wait(head=True, judge=self.head_is_judge)
            for _ in range(self.judge_nodes - (1 if self.head_is_judge else 0)):
                self.add_node(judge=True)
        except BaseException:
            self.stop()
            raise
        return self

    # ------------------------------------------------------------------ the reward service
    def deploy(self, service: dict[str, Any] | None = None, **options: Any) -> str:
        """Deploy the reward service (``python -m sandbox.cluster deploy`` in a child process).

        Args:
            service: :class:`sandbox.service.server.ServerConfig` fields of every replica.
            **options: other :class:`~sandbox.cluster.config.ClusterConfig` fields.

        Returns:
            The proxy's URL.

        Raises:
            RuntimeError: the deployment failed (with the deployer's output).

        """
        wait_nodes = sum(1 for n in self.nodes if n.judge and n.alive)
        argv = [sys.executable, "-m", "sandbox.cluster", "deploy", "--address", self.address,
                "--http-port", str(self.http_port), "--service", json.dumps(service or {}),
                "--wait-judge-nodes", str(wait_nodes), "--timeout-s", str(self.startup_timeout_s)]
        if self.token_file is not None:
            argv += ["--ray-token-file", str(self.token_file)]
        for key, value in options.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        self.scheme = "https" if options.get("tls_certfile") else "http"
        proc = subprocess.run(argv, env=self._env(), capture_output=True, text=True, cwd=str(_REPO_ROOT),
                              timeout=self.startup_timeout_s + 60)
        self.deploy_output = proc.stderr  # the deployer's warnings (e.g. Ray without token authentication)
        if proc.returncode != 0:
            raise RuntimeError(f"deploy failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}\n"
                               f"--- head log ---\n{self.head.log_tail()}")
        return self.url

    # ------------------------------------------------------------------ processes (fault injection)
    def processes(self, needle: str) -> list[int]:
        """Pids of this cluster's processes whose command line contains ``needle``.

        Looks in the nodes' process groups and below them (sandbox workers run in sessions of
        their own, as children of a replica); never at other processes of the machine.
        """
        groups = {n.proc.pid for n in self.nodes if n.alive}
        table = _process_table()
        ours = {pid for pid, (_, pgid, _) in table.items() if pgid in groups}
        frontier = set(ours)
        while frontier:  # descendants of our groups' processes
            frontier = {pid for pid, (ppid, _, _) in table.items() if ppid in frontier and pid not in ours}
            ours |= frontier
        return sorted(pid for pid in ours if needle in table[pid][2])

    def node_of(self, pid: int) -> RayNode | None:
        """The node whose process group ``pid`` (or an ancestor of it) belongs to."""
        table = _process_table()
        groups = {n.proc.pid: n for n in self.nodes}
        for _ in range(64):
            if pid not in table:
                return None
            ppid, pgid, _ = table[pid]
            if pgid in groups:
                return groups[pgid]
            pid = ppid
        return None

    # ------------------------------------------------------------------ lifetime
    def stop(self) -> None:
        """SIGTERM then SIGKILL every node's process group; remove the work directory. Idempotent."""
        for node in reversed(self.nodes):
            node.kill(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for node in reversed(self.nodes):
            try:
                node.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            node.kill(signal.SIGKILL)  # the group may outlive its leader (raylet, workers)
            try:
                node.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.nodes.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "LocalRayCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
