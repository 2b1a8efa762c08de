"""Serve the in-boundary runner on a unix socket (stdlib only; the compose ``worker`` service).

``python3 -m sandbox.runner.socket_server --socket-dir /run/er-sandbox`` listens on
``/run/er-sandbox/<name>.sock`` (``<name>`` defaults to the host name, which Docker sets to
the container id, so ``docker compose up --scale worker=N`` gives N distinct sockets in one
shared volume). The gateway's :class:`sandbox.isolation.socket.SocketIsolation` finds them
there. Workers run with ``network_mode: none``: this socket is their only channel.

Wire protocol: the runner's JSON-lines protocol (see :mod:`sandbox.runner.job`) per
connection: one RunJob per line in, one RunOutcome per line out, plus one control line
``{"op": "ping"}`` answered with ``{"op": "pong", "protocol": 1, "name": ..., "sandbox_uid": ...,
"pid_namespace": ..., "jobs": ...}``. Connections are served one at a time (a worker runs one
job at a time; scale the service for concurrency), so a second client waits in the backlog.

Trust: the socket is created ``0660`` (owner root, group ``--socket-gid``) in a directory set
to ``0750`` with the same group: only the runner and the gateway's group may connect. The
programs run as ``--sandbox-uid`` (default: a random uid of this worker, so two workers never
share a uid and ``RLIMIT_NPROC`` or the after-test kill sweep cannot reach another worker's
processes) with no supplementary groups, so they cannot reach the socket. Every job's
``sandbox_uid``/``sandbox_gid`` is overridden with this worker's uid and ``sweep_uid`` is set,
since this runner owns that uid.

``python3 -m sandbox.runner.socket_server --check --socket-dir DIR`` pings this worker's own socket
(the container health check); exit status 0 iff it answered.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import sys

from sandbox.runner import job as runner

__all__ = ["serve_socket", "ping", "socket_path", "MAX_LINE_BYTES", "main"]

MAX_LINE_BYTES = 256 << 20
IDLE_TIMEOUT_S = 600.0
_SANDBOX_UID_RANGE = (1_000_000, 2_000_000_000)


def socket_path(socket_dir: str, name: str | None = None) -> str:
    """Return the socket path this worker uses.

    Args:
        socket_dir: the shared socket directory.
        name: worker name; default: this host's name (the container id under Docker).

    Returns:
        ``<socket_dir>/<name>.sock``.

    """
    return os.path.join(socket_dir, f"{name or socket.gethostname()}.sock")


def _prepare_dir(socket_dir: str, gid: int | None) -> None:
    os.makedirs(socket_dir, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(socket_dir, 0, gid if gid is not None else 0)
    os.chmod(socket_dir, 0o750 if gid is not None else 0o700)


def _listen(path: str, gid: int | None) -> socket.socket:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    if gid is not None:
        if os.geteuid() == 0:
            os.chown(path, 0, gid)
        os.chmod(path, 0o660)
    sock.listen(16)
    return sock


def _answer(line: bytes, state: dict) -> dict:
    try:
        request = json.loads(line)
    except ValueError as exc:
        return {"protocol": runner.PROTOCOL_VERSION, "status": "error", "error": f"bad JSON line: {exc}",
                "compile": None, "tests": [], "stopped_early": False, "runner": {}}
    if isinstance(request, dict) and request.get("op") == "ping":
        return {"op": "pong", "protocol": runner.PROTOCOL_VERSION, "name": state["name"],
                "sandbox_uid": state["uid"], "jobs": state["jobs"], "pid": os.getpid()}
    if isinstance(request, dict) and state["uid"] is not None:
        request.update(sandbox_uid=state["uid"], sandbox_gid=state["uid"], sweep_uid=True)
    state["jobs"] += 1
    return runner.run_job(request)


def _serve_connection(conn: socket.socket, state: dict) -> None:
    conn.settimeout(IDLE_TIMEOUT_S)
    with conn, conn.makefile("rb") as reader:
        while True:
            try:
                line = reader.readline(MAX_LINE_BYTES + 1)
            except (OSError, socket.timeout):
                return
            if not line:
                return
            if len(line) > MAX_LINE_BYTES:
                conn.sendall(json.dumps({"status": "error", "error": f"job line over {MAX_LINE_BYTES} bytes"}).encode()
                             + b"\n")
                return
            if not line.strip():
                continue
            try:
                conn.sendall(json.dumps(_answer(line, state)).encode() + b"\n")
            except OSError:
                return


def serve_socket(socket_dir: str, name: str | None = None, socket_gid: int | None = None,
                 sandbox_uid: int | None = None) -> None:
    """Listen on ``socket_path(socket_dir, name)`` and serve jobs until SIGTERM/SIGINT.

    Args:
        socket_dir: directory for the socket (a volume shared with the gateway).
        name: socket name (default: host name).
        socket_gid: group allowed to connect (the gateway's gid); ``None``: owner only.
        sandbox_uid: uid the programs run as when this runner is root; ``None``: a random
            uid unique to this worker.

    Raises:
        OSError: the socket cannot be created.

    """
    if os.geteuid() == 0 and sandbox_uid is None:
        sandbox_uid = random.SystemRandom().randrange(*_SANDBOX_UID_RANGE)
    path = socket_path(socket_dir, name)
    _prepare_dir(socket_dir, socket_gid)
    sock = _listen(path, socket_gid)
    state = {"name": os.path.basename(path)[:-5], "uid": sandbox_uid if os.geteuid() == 0 else None, "jobs": 0}

    def _stop(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"runner_socket: serving {path} (sandbox uid {state['uid']})", file=sys.stderr, flush=True)
    try:
        while True:
            conn, _ = sock.accept()
            _serve_connection(conn, state)
    finally:
        sock.close()
        try:
            os.unlink(path)
        except OSError:
            pass


def ping(path: str, timeout_s: float = 5.0) -> dict:
    """Send ``{"op": "ping"}`` to a worker socket.

    Args:
        path: the socket path.
        timeout_s: connect and read timeout.

    Returns:
        The pong dict.

    Raises:
        OSError: connection failed or timed out.
        ValueError: the answer is not a pong.

    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(path)
        sock.sendall(b'{"op": "ping"}\n')
        with sock.makefile("rb") as reader:
            answer = json.loads(reader.readline(1 << 20) or b"null")
    if not isinstance(answer, dict) or answer.get("op") != "pong":
        raise ValueError(f"worker at {path} answered {answer!r:.200} instead of a pong")
    return answer


def main(argv: list[str] | None = None) -> int:
    """CLI (see the module docstring); returns the exit status."""
    parser = argparse.ArgumentParser(prog="python3 -m sandbox.runner.socket_server",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--socket-dir", default=os.environ.get("ER_SANDBOX_SOCKET_DIR", "/run/er-sandbox"),
                        help="socket directory shared with the gateway (env ER_SANDBOX_SOCKET_DIR)")
    parser.add_argument("--name", default=None, help="socket name (default: host name)")
    parser.add_argument("--socket-gid", type=int, default=_env_int("ER_SANDBOX_SOCKET_GID"),
                        help="group allowed to connect, the gateway's gid (env ER_SANDBOX_SOCKET_GID)")
    parser.add_argument("--sandbox-uid", type=int, default=_env_int("ER_SANDBOX_UID"),
                        help="uid programs run as (env ER_SANDBOX_UID; default: random per worker)")
    parser.add_argument("--check", action="store_true", help="ping this worker's socket and exit")
    args = parser.parse_args(argv)
    if args.check:
        try:
            ping(socket_path(args.socket_dir, args.name))
        except (OSError, ValueError) as exc:
            print(f"runner_socket: unhealthy: {exc}", file=sys.stderr)
            return 1
        return 0
    serve_socket(args.socket_dir, args.name, args.socket_gid, args.sandbox_uid)
    return 0


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else None


if __name__ == "__main__":
    sys.exit(main())
