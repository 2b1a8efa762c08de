"""Socket isolation: send RunJobs to compose workers over unix sockets in a shared directory.

The compose ``worker`` service (``docker compose up --scale worker=N``) runs
``python3 -m sandbox.runner.socket_server`` in containers with no network at all; each listens on
``<socket_dir>/<container id>.sock`` in a volume shared with the gateway (see
:mod:`sandbox.runner.socket_server`). This backend, used by the gateway, finds the sockets there
(re-scanning the directory, so scaled-up or restarted workers are picked up), sends each job
to a worker it is not already using (one connection per job), and reads the RunOutcome line.

Failure handling: a socket that refuses connections (a stopped worker's leftover) is skipped
until the directory changes; a worker that hangs up before answering (container killed or
restarted mid-job) makes the job retry once on another worker; a worker silent past
:meth:`~sandbox.core.jobs.RunJob.deadline_s` or answering garbage raises
:class:`~sandbox.core.errors.SandboxError` (INTERNAL_ERROR, never a verdict). With no reachable
worker for ``wait_for_worker_s``, :class:`~sandbox.core.errors.BackendUnavailable` is raised; while workers
exist but are all busy, jobs simply queue (one job per worker at a time).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sandbox.core.errors import BackendUnavailable, RunnerProtocolError, SandboxError
from sandbox.core.isolation import IsolationBackend
from sandbox.core.jobs import RunJob, RunOutcome

__all__ = ["SocketBackend", "SocketBackendConfig", "SocketIsolation", "DEFAULT_SOCKET_DIR"]

DEFAULT_SOCKET_DIR = "/run/er-sandbox"
_MAX_ANSWER_BYTES = 1 << 30


@dataclass
class SocketBackendConfig:
    """Configuration of :class:`SocketBackend`."""

    socket_dir: str = field(default_factory=lambda: os.environ.get("ER_SANDBOX_SOCKET_DIR", DEFAULT_SOCKET_DIR),
                            metadata={"help": "directory of the workers' *.sock files (env ER_SANDBOX_SOCKET_DIR)"})
    connect_timeout_s: float = field(default=5.0, metadata={"help": "limit for connecting and sending a job"})
    transport_slack_s: float = field(default=30.0, metadata={
        "help": "added to tests x wall limit before a silent worker is declared broken"})
    wait_for_worker_s: float = field(default=60.0, metadata={
        "help": "how long a job waits while no worker is reachable (busy workers are waited for) before "
                "BackendUnavailable"})
    rescan_interval_s: float = field(default=2.0, metadata={"help": "re-list socket_dir at most this often"})

    def __post_init__(self) -> None:
        if self.connect_timeout_s <= 0 or self.wait_for_worker_s < 0:
            raise ValueError(f"connect_timeout_s={self.connect_timeout_s} must be > 0 and "
                             f"wait_for_worker_s={self.wait_for_worker_s} >= 0")


class _Hangup(SandboxError):
    """The worker closed the connection before answering."""


class SocketBackend(IsolationBackend):
    """Client of the compose workers' unix sockets (see the module docstring).

    Args:
        config: a :class:`SocketBackendConfig`; keyword arguments override its fields.

    """

    name = "socket"

    def __init__(self, config: SocketBackendConfig | None = None, **overrides: Any) -> None:
        base = config or SocketBackendConfig()
        self.config = SocketBackendConfig(**{**base.__dict__, **overrides})
        self._cond = threading.Condition()
        self._busy: set[str] = set()
        self._dead: dict[str, float] = {}  # path -> mtime of the socket file when it refused
        self._known: list[str] = []
        self._scanned_at = 0.0
        self._rr = 0
        self.stats: dict[str, Any] = {"jobs": 0, "retried": 0, "hangups": 0, "last_error": None}

    # ------------------------------------------------------------------ discovery

    def _scan(self, force: bool = False) -> list[str]:
        now = time.monotonic()
        if not force and now - self._scanned_at < self.config.rescan_interval_s:
            return self._known
        try:
            names = sorted(n for n in os.listdir(self.config.socket_dir) if n.endswith(".sock"))
        except OSError as exc:
            self.stats["last_error"] = f"cannot list {self.config.socket_dir}: {exc}"
            names = []
        paths = [os.path.join(self.config.socket_dir, n) for n in names]
        for path in list(self._dead):
            if path not in paths or _mtime(path) != self._dead[path]:
                del self._dead[path]  # gone, or re-created by a restarted worker
        self._known, self._scanned_at = paths, now
        return paths

    def _acquire(self, avoid: set[str]) -> str:
        """Take a free worker socket; wait while workers are busy, give up after ``wait_for_worker_s`` with none."""
        deadline = time.monotonic() + self.config.wait_for_worker_s
        with self._cond:
            while True:
                candidates = [p for p in self._scan() if p not in self._busy and p not in self._dead and p not in avoid]
                if candidates:
                    self._rr = (self._rr + 1) % len(candidates)
                    path = candidates[self._rr]
                    self._busy.add(path)
                    return path
                if self._busy:  # workers exist and are working: queue behind them, however long that takes
                    deadline = time.monotonic() + self.config.wait_for_worker_s
                elif time.monotonic() >= deadline:
                    raise BackendUnavailable(
                        f"no sandbox worker reachable in {self.config.socket_dir} after {self.config.wait_for_worker_s}"
                        f" s ({len(self._known)} sockets, {len(self._busy)} busy, {len(self._dead)} refusing); "
                        "start workers with `docker compose up -d --scale worker=N`")
                self._cond.wait(min(0.2, self.config.rescan_interval_s))
                self._scan(force=not self._busy)

    def _count(self, key: str, error: str | None = None) -> None:
        with self._cond:
            self.stats[key] += 1
            if error is not None:
                self.stats["last_error"] = error

    def _release(self, path: str, dead: bool) -> None:
        with self._cond:
            self._busy.discard(path)
            if dead:
                self._dead[path] = _mtime(path)
            self._cond.notify()

    # ------------------------------------------------------------------ transport

    def _call(self, path: str, job: RunJob, deadline_s: float) -> RunOutcome:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.config.connect_timeout_s)
            sock.connect(path)  # OSError here: worker gone -> caller marks it dead
            sock.settimeout(max(self.config.connect_timeout_s, deadline_s))
            sock.sendall(json.dumps(job.to_wire()).encode() + b"\n")
            end = time.monotonic() + deadline_s
            with sock.makefile("rb") as reader:
                while True:
                    sock.settimeout(max(0.05, end - time.monotonic()))
                    try:
                        line = reader.readline(_MAX_ANSWER_BYTES)
                    except (socket.timeout, TimeoutError) as exc:
                        raise SandboxError(f"worker {os.path.basename(path)} gave no answer within {deadline_s:.0f} s"
                                           ) from exc
                    except OSError as exc:
                        raise _Hangup(f"worker {os.path.basename(path)}: {exc}") from exc
                    if not line:
                        raise _Hangup(f"worker {os.path.basename(path)} hung up before answering")
                    if line.strip():
                        break
        finally:
            sock.close()
        try:
            return RunOutcome.from_wire(json.loads(line))
        except (ValueError, RunnerProtocolError) as exc:
            raise SandboxError(f"worker {os.path.basename(path)} answered garbage: {exc}") from exc

    # ------------------------------------------------------------------ interface

    def execute(self, job: RunJob) -> RunOutcome:
        """Run ``job`` on a free compose worker (see :meth:`IsolationBackend.execute`).

        Raises:
            BackendUnavailable: no reachable worker within ``wait_for_worker_s``.
            SandboxError: the worker hung up twice, timed out or answered garbage.

        """
        deadline_s = job.deadline_s(self.config.transport_slack_s)
        avoid: set[str] = set()
        hangups = 0
        while True:
            path = self._acquire(avoid)
            dead = False
            try:
                outcome = self._call(path, job, deadline_s)
            except _Hangup as exc:
                dead, hangups = True, hangups + 1
                self._count("hangups", str(exc))
                if hangups > 1:
                    raise SandboxError(f"two workers hung up on this job; last: {exc}") from exc
                self._count("retried")
                avoid.add(path)
                continue
            except SandboxError as exc:
                with self._cond:
                    self.stats["last_error"] = str(exc)
                raise
            except OSError:
                dead = True  # refused/missing socket: try another worker, no job was sent
                avoid.add(path)
                continue
            finally:
                self._release(path, dead)
            self._count("jobs")
            return outcome

    def health(self) -> dict[str, Any]:
        """Ping every idle worker socket; ``ok`` iff at least one worker answers."""
        from sandbox.runner.socket_server import ping

        with self._cond:
            paths = list(self._scan(force=True))
            busy = set(self._busy)
        alive, errors = 0, {}
        for path in paths:
            if path in busy:
                alive += 1
                continue
            try:
                ping(path, timeout_s=self.config.connect_timeout_s)
                alive += 1
            except (OSError, ValueError) as exc:
                errors[os.path.basename(path)] = str(exc)[:200]
        return {"backend": self.name, "ok": alive > 0, "socket_dir": self.config.socket_dir, "workers": len(paths),
                "alive": alive, "busy": len(busy), "errors": errors, **self.stats}


SocketIsolation = SocketBackend


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return -1.0
