"""Docker isolation: a pool of warm, locked-down worker containers (library use, no compose).

Each pool slot is one long-lived container of the worker image
(``sandbox/docker/Dockerfile.worker``) running ``python3 -m sandbox.runner.job --serve``; the
backend talks to it over the attached stdin/stdout (one RunJob JSON line in, one RunOutcome
line out, see :mod:`sandbox.runner.job`). Jobs go to a free container; callers block while all are
busy, so ``pool_size`` bounds concurrency.

Lock-down of every container (see :class:`DockerBackendConfig` for the knobs):

- ``network_mode=none`` (no interface but loopback), ``ipc_mode=none`` (no ``/dev/shm``) and IPC
  sysctls that forbid SysV/POSIX IPC objects (they would outlive a run),
  read-only root file system, ``/tmp`` a ``noexec,nosuid,nodev`` tmpfs owned by root with mode
  ``0711`` (the runner's job dirs live there; programs can write only their own work dir).
- ``cap_drop=ALL`` plus only what the root runner needs to drop each test to an unprivileged uid
  and clean up after it: CHOWN, DAC_OVERRIDE, FOWNER (wipe the work dir the program owns), SETUID,
  SETGID, KILL (kill every process of the sandbox uid after each test). The program itself runs
  as a uid unique to the container with no capabilities and ``no_new_privs``.
- ``security_opt=no-new-privileges``, ``pids_limit``, ``mem_limit`` = ``memswap_limit`` (no swap),
  ``nano_cpus``, ``ulimits`` (nofile, core=0), ``init=True`` (an init reaps orphans).
- Each job runs with ``sweep_uid=True`` and the container's own sandbox uid, so after every test
  the runner kills whatever the program left running and wipes its files.

Failures: a container that dies, answers garbage or does not answer within
:meth:`~sandbox.core.jobs.RunJob.deadline_s` (the runner enforces the per-test limits itself, so
this only happens when the runner is broken) is killed and replaced in the background; the job
is retried once on another container when the container died before answering, else
:class:`~sandbox.core.errors.SandboxError` is raised, which the judge reports as INTERNAL_ERROR. A
user program's TLE/MLE/RE is an ordinary test status in the outcome, never an exception.

Example::

    from sandbox.isolation import get_backend
    with get_backend("docker", pool_size=2) as backend:
        outcome = backend.execute({"source": "print(input())", "tests": [{"stdin": "hi"}]})
"""

from __future__ import annotations

import json
import os
import random
import select
import socket
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sandbox.core.errors import BackendUnavailable, RunnerProtocolError, SandboxError
from sandbox.core.isolation import IsolationBackend
from sandbox.core.jobs import DEFAULT_LIMITS, RunJob, RunOutcome, TestInput
from sandbox.core.pool import WorkerPool
from sandbox.isolation.docker_image import WORKER_IMAGE, ensure_worker_image
from sandbox.isolation.lines import LineBuffer

__all__ = ["DockerBackend", "DockerBackendConfig", "DockerIsolation", "RUNNER_CAPS", "NO_IPC_SYSCTLS"]

RUNNER_CAPS = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "KILL")
# IPC objects live in the container's IPC namespace and would outlive a run (a channel to later runs):
# forbid them all. (POSIX shared memory needs /dev/shm, absent with ipc_mode=none.)
NO_IPC_SYSCTLS = {"kernel.shmmax": "0", "kernel.shmall": "0", "kernel.msgmni": "0", "kernel.sem": "0 0 0 0",
                  "fs.mqueue.queues_max": "0"}
_SANDBOX_UID_RANGE = (1_000_000, 2_000_000_000)
_WARMUP_JOB = RunJob(source="pass", tests=(TestInput(),))
_HEADER_BYTES = 8
_STDERR_KEEP_BYTES = 16 << 10
_RUNNER_HEADROOM_BYTES = 256 << 20


@dataclass
class DockerBackendConfig:
    """Configuration of :class:`DockerBackend`.

    > Parameters that control the pool

    > Parameters that control each container's limits (the runner adds per-test rlimits inside)
    """

    image: str = field(default=WORKER_IMAGE, metadata={"help": "worker image (sandbox/docker/Dockerfile.worker)"})
    pool_size: int = field(default=2, metadata={"help": "warm containers = jobs run concurrently"})
    auto_build: bool = field(default=True, metadata={
        "help": "build the worker image when missing or older than this runner (ensure_worker_image)"})
    base_image: str | None = field(default=None, metadata={
        "help": "BASE_IMAGE for auto_build (default: $ER_SANDBOX_BASE_IMAGE, er-sandbox-base:local, python:3.11-slim)"})
    memory_limit_bytes: int = field(default=3 << 30, metadata={
        "help": "container memory (no swap); keep above the per-test memory limit plus ~300 MB for the runner"})
    cpus: float = field(default=1.0, metadata={"help": "CPU share per container (nano_cpus)"})
    pids_limit: int = field(default=256, metadata={"help": "max processes/threads in a container"})
    tmpfs_size_bytes: int = field(default=512 << 20, metadata={"help": "size of the /tmp tmpfs (all job files)"})
    max_open_files: int = field(default=1024, metadata={"help": "nofile ulimit of the container"})
    runtime: str | None = field(default=None, metadata={"help": "OCI runtime, e.g. 'runsc' for gVisor"})
    start_timeout_s: float = field(default=60.0, metadata={"help": "limit for starting + warming one container"})
    transport_slack_s: float = field(default=30.0, metadata={
        "help": "added to tests x wall limit before a silent container is declared broken"})
    max_jobs_per_container: int = field(default=0, metadata={"help": "recycle a container after N jobs (0: never)"})
    docker_base_url: str | None = field(default=None, metadata={"help": "Docker engine URL (default: DOCKER_HOST)"})

    def __post_init__(self) -> None:
        if self.pool_size < 1:
            raise ValueError(f"pool_size={self.pool_size} must be >= 1")
        if self.memory_limit_bytes < (256 << 20):
            raise ValueError(f"memory_limit_bytes={self.memory_limit_bytes} is below 256 MiB; the runner needs more")
        if self.cpus <= 0:
            raise ValueError(f"cpus={self.cpus} must be > 0")


class _TransportError(SandboxError):
    """The container failed to answer; ``died`` tells whether it is gone."""

    def __init__(self, message: str, died: bool) -> None:
        super().__init__(message)
        self.died = died


class _Attached:
    """A container's attached stdin/stdout: writes raw lines, reads Docker's multiplexed frames."""

    def __init__(self, sock) -> None:
        self._holder = sock
        self._sock = getattr(sock, "_sock", sock)
        self._buf = bytearray()
        self._stdout = LineBuffer()
        self.stderr: deque[bytes] = deque(maxlen=64)

    def send(self, data: bytes, deadline: float) -> None:
        self._sock.settimeout(max(0.05, deadline - time.monotonic()))
        self._sock.sendall(data)

    def _fill(self, n: int, deadline: float) -> None:
        while len(self._buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer before the deadline")
            self._sock.settimeout(left)
            chunk = self._sock.recv(1 << 20)
            if not chunk:
                raise EOFError("container closed its output")
            self._buf += chunk

    def read_line(self, deadline: float) -> bytes:
        while True:
            line = self._stdout.pop_line()
            if line is not None:
                return line
            self._fill(_HEADER_BYTES, deadline)
            stream, size = self._buf[0], int.from_bytes(self._buf[4:8], "big")
            self._fill(_HEADER_BYTES + size, deadline)
            payload = memoryview(self._buf)[_HEADER_BYTES:_HEADER_BYTES + size]
            if stream == 2:
                self.stderr.append(bytes(payload[-_STDERR_KEEP_BYTES:]))
            else:
                self._stdout.feed(payload)
            payload.release()
            del self._buf[:_HEADER_BYTES + size]

    def stderr_tail(self) -> str:
        return b"".join(self.stderr)[-2000:].decode("utf-8", "replace")

    def peer_closed(self) -> bool:
        """Whether the container's side has closed (it exited), checked without blocking or consuming output."""
        try:
            if not select.select([self._sock], [], [], 0)[0]:
                return False
            return self._sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):  # closed or broken socket
            return True

    def close(self) -> None:
        for obj in (self._sock, self._holder):
            try:
                obj.close()
            except OSError:  # closing a dead socket
                pass


class _Worker:
    """One warm container."""

    def __init__(self, backend: "DockerBackend") -> None:
        cfg = backend.config
        self.sandbox_uid = random.SystemRandom().randrange(*_SANDBOX_UID_RANGE)
        self.jobs = 0
        self.api = backend.client.api
        create, host = backend.container_kwargs()
        self.container_id = self.api.create_container(
            cfg.image, ["python3", "-m", "sandbox.runner.job", "--serve"],
            host_config=self.api.create_host_config(**host), **create)["Id"]
        self.id = self.container_id[:12]
        try:
            self.stream = _Attached(self.api.attach_socket(
                self.container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}))
            self.api.start(self.container_id)
            self.run(_WARMUP_JOB, time.monotonic() + cfg.start_timeout_s)
        except BaseException:
            self.kill()
            raise

    def alive(self) -> bool:
        """False once the container exited (its attach stream reached EOF): the pool replaces it unused."""
        return not self.stream.peer_closed()

    def run(self, job: RunJob, deadline: float) -> RunOutcome:
        wire = {**job.to_wire(), "sandbox_uid": self.sandbox_uid, "sandbox_gid": self.sandbox_uid, "sweep_uid": True}
        try:
            self.stream.send(json.dumps(wire).encode() + b"\n", deadline)
            line = self.stream.read_line(deadline)
        except (TimeoutError, OSError) as exc:
            # a broken pipe or reset (the container exited after the pool's alive check, e.g. OOM-killed while
            # idle) or a timeout with the stream closed is a death, retried; a live silent container is not
            died = isinstance(exc, (BrokenPipeError, ConnectionResetError)) or self.stream.peer_closed()
            raise _TransportError(f"container {self.id} gave no answer: {exc!r}", died=died) from exc
        except EOFError as exc:
            raise _TransportError(f"container {self.id} exited: {exc}; runner stderr: {self.stream.stderr_tail()!r}",
                                  died=True) from exc
        try:
            outcome = RunOutcome.from_wire(json.loads(line))
        except (ValueError, RunnerProtocolError) as exc:
            raise _TransportError(f"container {self.id} answered garbage: {exc}", died=False) from exc
        self.jobs += 1
        return outcome

    def kill(self) -> None:
        stream = getattr(self, "stream", None)
        if stream is not None:
            stream.close()
        try:
            self.api.remove_container(self.container_id, force=True)
        except (OSError, _docker_error()):  # already gone (auto_remove), being removed, or the engine went away
            pass


def _remove_all(client, ids: list[str]) -> None:
    for cid in ids:
        try:
            client.api.remove_container(cid, force=True)
        except (OSError, _docker_error()):  # best effort at interpreter exit
            pass


class DockerBackend(IsolationBackend):
    """Warm pool of locked-down worker containers (see the module docstring).

    Args:
        config: a :class:`DockerBackendConfig`; keyword arguments override its fields.

    Raises:
        BackendUnavailable: the docker SDK is missing, the engine is unreachable, the image cannot
            be built/found, or no container could be started.

    """

    name = "docker"

    def __init__(self, config: DockerBackendConfig | None = None, **overrides: Any) -> None:
        base = config or DockerBackendConfig()
        self.config = DockerBackendConfig(**{**base.__dict__, **overrides})
        self.client = _client(self.config)
        if self.config.auto_build:
            self.config.image = ensure_worker_image(self.config.image, self.config.base_image)
        self._check_image()
        self._live_ids: list[str] = []  # container ids the finalizer removes if this process exits first
        self._ids_lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _remove_all, self.client, self._live_ids)
        self._pool: WorkerPool[_Worker] = WorkerPool(
            self.config.pool_size, self._start_container, self._kill, alive=_Worker.alive, background=True,
            closed_error=lambda: SandboxError("DockerBackend is closed"),
            empty_error=lambda why: BackendUnavailable(f"all sandbox containers are gone: {why}"),
            start_errors=(SandboxError, OSError, _docker_error()))
        self._pool.fill(wait=True)
        if not self._pool.workers():
            why = self._pool.stats.last_error
            self.close()
            raise BackendUnavailable(f"no sandbox container could be started: {why}")

    def container_kwargs(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(create_container kwargs, create_host_config kwargs)``: the lock-down (see the module docstring)."""
        import docker.types

        cfg = self.config
        create = dict(
            # stdin closes when our attach connection does (even if this process is SIGKILLed): the runner
            # then sees EOF and exits, and auto_remove deletes the container, so a crashed owner leaks nothing
            stdin_open=True, detach=False, tty=False, user="0:0", working_dir="/",  # detach=False: StdinOnce
            labels={"er.sandbox.role": "pool-worker", "er.sandbox.owner-pid": str(os.getpid())},
            environment={"PYTHONDONTWRITEBYTECODE": "1"},
        )
        host = dict(
            auto_remove=True, network_mode="none", ipc_mode="none", sysctls=dict(NO_IPC_SYSCTLS), read_only=True,
            tmpfs={"/tmp": f"rw,noexec,nosuid,nodev,size={cfg.tmpfs_size_bytes},mode=0711"},
            cap_drop=["ALL"], cap_add=list(RUNNER_CAPS), security_opt=["no-new-privileges"],
            pids_limit=cfg.pids_limit, mem_limit=cfg.memory_limit_bytes, memswap_limit=cfg.memory_limit_bytes,
            nano_cpus=int(cfg.cpus * 1e9), init=True,
            ulimits=[docker.types.Ulimit(name="nofile", soft=cfg.max_open_files, hard=cfg.max_open_files),
                     docker.types.Ulimit(name="core", soft=0, hard=0)],
        )
        if cfg.runtime:
            host["runtime"] = cfg.runtime
        return create, host

    def _check_image(self) -> None:
        import docker.errors

        try:
            self.client.images.get(self.config.image)
        except docker.errors.ImageNotFound as exc:
            raise BackendUnavailable(
                f"worker image {self.config.image!r} not found; build it with "
                "`python3 -m sandbox.isolation.docker_image` or pass auto_build=True") from exc

    # ------------------------------------------------------------------ pool callbacks
    def _start_container(self, slot: int) -> _Worker:
        worker = _Worker(self)
        with self._ids_lock:
            self._live_ids.append(worker.container_id)
        return worker

    def _kill(self, worker: _Worker) -> None:
        worker.kill()
        with self._ids_lock:  # only now: the finalizer still removes it if this process exits first
            if worker.container_id in self._live_ids:
                self._live_ids.remove(worker.container_id)

    # ------------------------------------------------------------------ interface

    def execute(self, job: RunJob) -> RunOutcome:
        """Run ``job`` in a free warm container (see :meth:`IsolationBackend.execute`).

        Raises:
            SandboxError: the container failed twice, or failed without dying (timeout, garbage).
            BackendUnavailable: no container can be started.

        """
        self._check_memory(job)
        deadline_s = job.deadline_s(self.config.transport_slack_s)
        limit = self.config.max_jobs_per_container
        for attempt in range(2):
            slot, worker = self._pool.acquire()
            try:
                outcome = worker.run(job, time.monotonic() + deadline_s)
            except _TransportError as exc:
                self._pool.release(slot, worker, healthy=False, reason=str(exc))  # replaced in the background
                if exc.died and attempt == 0:
                    self._pool.count("retried")
                    continue
                raise SandboxError(str(exc)) from exc
            self._pool.count("jobs")
            self._pool.release(slot, worker, healthy=not (limit and worker.jobs >= limit))  # worn out: recycled
            return outcome
        raise AssertionError("unreachable")

    def _check_memory(self, job: RunJob) -> None:
        """Refuse a per-test memory limit the container cannot hold (the kernel OOM killer, not MLE, would end it)."""
        wanted = job.limits.memory_limit_bytes or DEFAULT_LIMITS.memory_limit_bytes
        room = self.config.memory_limit_bytes - _RUNNER_HEADROOM_BYTES
        if wanted > room:
            raise SandboxError(f"the job's memory_limit_bytes={int(wanted)} does not fit in a container of "
                               f"memory_limit_bytes={self.config.memory_limit_bytes} (runner headroom "
                               f"{_RUNNER_HEADROOM_BYTES}); raise DockerBackendConfig.memory_limit_bytes")

    @property
    def stats(self) -> dict[str, Any]:
        """Counters: jobs, recycled (containers replaced), retried, start_failures, last_error."""
        snap = self._pool.snapshot()
        return {"jobs": snap.get("jobs", 0), "recycled": snap["replaced"], "retried": snap.get("retried", 0),
                "start_failures": snap["start_failures"], "last_error": snap["last_error"]}

    def health(self) -> dict[str, Any]:
        """Pool state: live/idle/starting containers, job and recycle counts, last error."""
        snap = self._pool.snapshot()
        return {"backend": self.name, "ok": snap["live"] > 0 and not self._pool.closed, "image": self.config.image,
                "pool_size": self.config.pool_size, "live": snap["live"], "idle": snap["idle"],
                "starting": snap["starting"], **self.stats}

    def container_ids(self) -> list[str]:
        """Full ids of the live containers (for tests and debugging)."""
        return [w.container_id for w in self._pool.workers()]

    def close(self) -> None:
        """Kill and remove every container of the pool. Idempotent."""
        self._pool.close()


DockerIsolation = DockerBackend


def _docker_error() -> type[Exception]:
    """The docker SDK's base exception (the SDK is imported lazily, so this is looked up on use)."""
    import docker.errors

    return docker.errors.DockerException


def _client(cfg: DockerBackendConfig):
    try:
        import docker
        import docker.errors
    except ImportError as exc:  # pragma: no cover - docker is a core dependency
        raise BackendUnavailable("the docker backend needs the docker SDK: pip install 'docker>=7'") from exc
    try:
        client = docker.DockerClient(base_url=cfg.docker_base_url) if cfg.docker_base_url else docker.from_env()
        client.ping()
    except (OSError, docker.errors.DockerException) as exc:  # no engine, or not ours to talk to
        raise BackendUnavailable(f"Docker engine not reachable ({exc}); start dockerd or set DOCKER_HOST") from exc
    return client
