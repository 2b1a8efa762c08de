"""The ``process`` isolation backend: pre-forked runner subprocesses, no Docker needed.

Each worker is ``python3 -m sandbox.runner.job --serve`` started under ``unshare`` with the
namespaces this machine permits (probed at start: net, pid + mount with a fresh /proc,
ipc, uts; each dropped if refused, see :meth:`ProcessBackend.health`), a private tmpfs on
/tmp when it has a mount namespace, and its own sandbox uid (``base_uid + i``) so the
after-test kill sweep and ``RLIMIT_NPROC`` never touch another worker's programs. Inside,
the runner applies its per-test rules (fresh child, rlimits, uid drop, wiped working dir,
process-group kill, subreaper sweep; see :mod:`sandbox.runner.job`). The worker and its zygote
stay warm, so a job costs one pipe round trip plus one fork per test.

How much weaker than Docker this is, plainly:

- Shared kernel and no seccomp filter: a kernel exploit or a dangerous syscall is not
  stopped. (Docker adds a seccomp profile, dropped capabilities, and cgroup limits.)
- Same filesystem view: with a mount namespace only /tmp is private; everything else the
  host makes world-readable (``/etc``, ``/usr``, other users' world-readable files) can be
  read by the program. Writes are limited to what uid ``base_uid + i`` may write (its work
  dir, world-writable dirs such as ``/dev/shm``). No read-only remount of ``/`` is done.
- Disk: the private /tmp is a tmpfs of ``tmp_size_mb`` (RAM-backed); without a mount
  namespace programs write to the host's /tmp (files are swept after each test).
- Memory is bounded per process with ``RLIMIT_AS`` (and judged by peak RSS), not by a
  cgroup: a program that forks up to ``max_processes`` children can use that many times
  the limit for the length of one test.
- Without a net namespace (if refused) the program has the host's network.
- Without root, no uid drop happens: programs run as the calling user.
- If the interpreter's files are not readable by the sandbox uid (e.g. a pyenv Python
  under ``/root``), programs can import only the modules the zygote preloaded
  (:data:`sandbox.runner.harness.PRELOAD_MODULES`); ``health()["stdlib_readable_by_sandbox_uid"]``
  says so. Install Python system-wide (``/usr``) to lift this.

Use it for development, CI and trusted-ish workloads; use ``docker`` for RL training on
untrusted model output.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from sandbox.core.errors import BackendUnavailable, SandboxError
from sandbox.core.isolation import IsolationBackend
from sandbox.core.jobs import RunJob, RunOutcome
from sandbox.core.pool import WorkerPool
from sandbox.isolation.lines import LineBuffer
from sandbox.isolation.staging import runner_launch

__all__ = ["ProcessBackend", "ProcessBackendConfig", "probe_namespaces"]

_NAMESPACE_FLAGS = {"net": ["--net"], "pid": ["--pid", "--fork", "--mount-proc"], "mount": ["--mount"],
                    "ipc": ["--ipc"], "uts": ["--uts"]}
_READ_BYTES = 4 << 20
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass
class ProcessBackendConfig:
    """Settings of the process backend.

    > Parameters that control the workers
    """

    workers: int = field(default=2, metadata={"help": "Pre-forked runner processes (jobs run in parallel)."})
    namespaces: tuple[str, ...] = field(default=("net", "pid", "mount", "ipc", "uts"), metadata={
        "help": "Namespaces to ask unshare for; refused ones are dropped and reported in health()."})
    base_uid: int | None = field(default=None, metadata={
        "help": "Worker i runs programs as uid/gid base_uid + i. None: claim a free range per backend (a lock file "
                "under /run/er-sandbox/uids), so two backends on one host never kill each other's programs."})
    private_tmp: bool = field(default=True, metadata={"help": "Mount a tmpfs on /tmp (needs a mount namespace)."})
    tmp_size_mb: int = field(default=512, metadata={
        "help": "Size of each worker's private /tmp tmpfs (RAM-backed: it bounds what a program can write)."})
    transport_slack_s: float = field(default=30.0, metadata={"help": "Added to a job's wall budget before the "
                                                                     "worker is declared hung."})

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers={self.workers} must be >= 1")
        unknown = set(self.namespaces) - set(_NAMESPACE_FLAGS)
        if unknown:
            raise ValueError(f"unknown namespaces {sorted(unknown)}; use some of {sorted(_NAMESPACE_FLAGS)}")


def _unshare_argv(namespaces: list[str]) -> list[str]:
    if not namespaces:
        return []
    argv = ["unshare"]
    ordered = ["mount"] + [n for n in namespaces if n != "mount"] if "mount" in namespaces else list(namespaces)
    for name in ordered:
        argv += _NAMESPACE_FLAGS[name]
    return argv + ["--"]


def probe_namespaces(wanted: tuple[str, ...]) -> list[str]:
    """The subset of ``wanted`` namespaces ``unshare`` may create here.

    ``pid`` needs ``mount`` (a fresh /proc must match the PID namespace, or pids read from
    /proc would name the wrong processes), so it is dropped when ``mount`` is refused.
    """
    if shutil.which("unshare") is None:
        return []

    def works(names: list[str]) -> bool:
        try:
            return subprocess.run(_unshare_argv(names) + ["true"], capture_output=True, timeout=10).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    if works(list(wanted)):
        return list(wanted)
    granted = [n for n in wanted if n != "pid" and works([n])]
    if "pid" in wanted and "mount" in granted and works(["mount", "pid"]):
        granted.append("pid")
    return granted


def _stdlib_readable() -> bool:
    """Whether "other" users can read this interpreter's stdlib (else only preloaded modules import)."""
    path = os.path.dirname(os.path.realpath(os.__file__))
    while path not in ("/", ""):
        if not os.stat(path).st_mode & 0o005:
            return False
        path = os.path.dirname(path)
    return True


_UID_LOCK_DIR = "/run/er-sandbox/uids"
_UID_FIRST, _UID_RANGES, _UID_STRIDE = 200_000, 4096, 256


def _claim_uid_range(workers: int) -> tuple[int, int]:
    """Claim ``workers`` consecutive sandbox uids no other live backend on this host uses.

    Each range is guarded by an exclusive ``flock`` on a lock file that is held for the
    backend's lifetime (the kernel drops it when the process dies, so crashes leak nothing).

    Returns:
        ``(base_uid, lock_fd)``.

    Raises:
        BackendUnavailable: ``workers`` exceeds a range, or every range is taken.

    """
    import fcntl
    import random

    if workers > _UID_STRIDE:
        raise BackendUnavailable(f"workers={workers} exceeds {_UID_STRIDE} per backend; pass base_uid explicitly")
    os.makedirs(_UID_LOCK_DIR, mode=0o700, exist_ok=True)
    start = random.randrange(_UID_RANGES)
    for k in range(_UID_RANGES):
        base = _UID_FIRST + ((start + k) % _UID_RANGES) * _UID_STRIDE
        fd = os.open(os.path.join(_UID_LOCK_DIR, str(base)), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        os.set_inheritable(fd, False)
        return base, fd
    raise BackendUnavailable(f"all {_UID_RANGES} sandbox uid ranges under {_UID_LOCK_DIR} are in use")


class _Worker:
    """One warm ``sandbox.runner.job --serve`` process."""

    def __init__(self, argv: list[str], uid: int, pythonpath: str = _REPO_ROOT) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": pythonpath, "LANG": "C.UTF-8"}
        self.uid = uid
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=env, cwd="/", start_new_session=True)
        self._buf = LineBuffer()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def request(self, job: dict, deadline_s: float) -> dict:
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None  # Popen(stdin=PIPE, stdout=PIPE)
        try:
            stdin.write(json.dumps(job).encode() + b"\n")
            stdin.flush()
        except BrokenPipeError as exc:  # it had exited (all its ends closed): the job never reached it
            raise _WorkerGone(f"process worker had exited before the job (exit status {self.proc.poll()})") from exc
        fd = stdout.fileno()
        end = time.monotonic() + deadline_s
        line = self._buf.pop_line()
        while line is None:
            left = end - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise SandboxError(f"process worker gave no answer within {deadline_s:.0f} s")
            chunk = os.read(fd, _READ_BYTES)
            if not chunk:
                raise SandboxError(f"process worker died (exit status {self.proc.poll()})")
            self._buf.feed(chunk)
            line = self._buf.pop_line()
        try:
            return json.loads(line)
        except ValueError as exc:
            raise SandboxError(f"process worker answered non-JSON {line[:200]!r}: {exc}") from None

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()


class _WorkerDied(SandboxError):
    """The worker process exited under a job (the job may be sent to another worker)."""


class _WorkerGone(_WorkerDied):
    """The worker had exited before the job was written to it (the job never ran: always safe to resend)."""


def _exited(worker: _Worker, wait_s: float = 1.0) -> bool:
    """Whether ``worker``'s process has exited (waiting up to ``wait_s``: EOF precedes the exit status)."""
    try:
        worker.proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        return False
    return True


class ProcessBackend(IsolationBackend):
    """Runs jobs in pre-forked, namespaced runner subprocesses (see the module docstring).

    Args:
        config: a :class:`ProcessBackendConfig`; keyword arguments override its fields.

    """

    name = "process"

    def __init__(self, config: ProcessBackendConfig | None = None, **overrides: Any) -> None:
        if sys.platform != "linux":
            raise BackendUnavailable(f"the process backend needs Linux, this is {sys.platform!r}")
        base = config or ProcessBackendConfig()
        self.config = ProcessBackendConfig(**{**base.__dict__, **overrides})
        self.namespaces = probe_namespaces(self.config.namespaces)
        self.private_tmp = self.config.private_tmp and "mount" in self.namespaces
        try:
            python, self._pythonpath = runner_launch(self.private_tmp)
        except OSError as exc:
            raise BackendUnavailable(f"cannot start the process backend's runner: {exc}") from exc
        self._argv = _unshare_argv(self.namespaces) + [python, "-m", "sandbox.runner.job", "--serve"]
        if self.private_tmp:
            self._argv.append(f"--private-tmp={int(self.config.tmp_size_mb)}m")
        self.jobs_run = 0
        self.job_retries = 0
        self._uid_lock: int | None = None
        if self.config.base_uid is None:
            claimed, self._uid_lock = _claim_uid_range(self.config.workers)
            self.config = ProcessBackendConfig(**{**self.config.__dict__, "base_uid": claimed})
        base_uid: int = self.config.base_uid if self.config.base_uid is not None else 0
        self.base_uid = base_uid
        self._pool: WorkerPool[_Worker] = WorkerPool(
            self.config.workers, lambda slot: _Worker(self._argv, base_uid + slot, self._pythonpath),
            _Worker.kill, alive=_Worker.alive, closed_error=lambda: SandboxError("ProcessBackend is closed"))
        self._pool.fill()

    @property
    def worker_restarts(self) -> int:
        """Workers replaced after dying, timing out or answering garbage."""
        return self._pool.stats.replaced

    def execute(self, job: RunJob) -> RunOutcome:
        """Run ``job`` on an idle worker (blocks until one is free). See the base class.

        A job whose worker died under it (killed from outside, crashed) is sent once more to a
        fresh worker; a worker that went silent past the job's deadline is not retried. A worker
        found dead when the job is written to it (it died while idle, before the pool noticed)
        never ran the job, so the job goes to the next worker without using up that one retry
        (at most ``2 * workers + 1`` such hand-outs, so a pool whose workers die at start still
        fails).
        """
        died_under_job, gone = 0, 0
        while True:
            try:
                return self._execute_once(job)
            except _WorkerGone:
                gone += 1
                if gone > 2 * self.config.workers or self._pool.closed:
                    raise
            except _WorkerDied:
                died_under_job += 1
                if died_under_job > 1 or self._pool.closed:
                    raise
            self.job_retries += 1

    def _execute_once(self, job: RunJob) -> RunOutcome:
        slot, worker = self._pool.acquire()
        owned = {**job.to_wire(), "sandbox_uid": worker.uid, "sandbox_gid": worker.uid, "sweep_uid": True}
        try:
            outcome = worker.request(owned, job.deadline_s(self.config.transport_slack_s))
        except _WorkerGone as exc:
            self._pool.release(slot, worker, healthy=False, reason=str(exc))
            raise _WorkerGone(f"process backend: {exc}") from exc
        except (SandboxError, OSError) as exc:
            died = _exited(worker)
            self._pool.release(slot, worker, healthy=False, reason=str(exc))
            raise (_WorkerDied if died else SandboxError)(f"process backend: {exc}") from exc
        self._pool.release(slot, worker)
        self.jobs_run += 1
        return RunOutcome.from_wire(outcome)

    def health(self) -> dict[str, Any]:
        """Backend facts: workers alive, namespaces applied, private /tmp, uid range, counters."""
        alive = sum(1 for w in self._pool.workers() if w.alive())
        return {"backend": self.name, "ok": alive > 0 and not self._pool.closed, "workers": self.config.workers,
                "workers_alive": alive, "namespaces": list(self.namespaces),
                "namespaces_refused": [n for n in self.config.namespaces if n not in self.namespaces],
                "runner_pythonpath": self._pythonpath,
                "private_tmp": self.private_tmp, "tmp_size_mb": self.config.tmp_size_mb if self.private_tmp else None,
                "uid_drop": os.geteuid() == 0,
                "stdlib_readable_by_sandbox_uid": _stdlib_readable(),
                "sandbox_uids": [self.base_uid, self.base_uid + self.config.workers - 1],
                "jobs_run": self.jobs_run, "worker_restarts": self.worker_restarts, "job_retries": self.job_retries}

    def close(self) -> None:
        """Kill all workers. Idempotent."""
        self._pool.close()
        if self._uid_lock is not None:  # workers are dead: the uid range may be reused
            os.close(self._uid_lock)
            self._uid_lock = None
