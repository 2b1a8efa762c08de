"""What one test execution is made of, shared by the zygote and its sessions (stdlib only, Linux).

Internal module of the runner (see :mod:`sandbox.runner.job` for the protocol and the isolation
rules, :mod:`sandbox.runner.zygote` for the fork server that uses these pieces, and
:mod:`sandbox.runner.session` for shared-process sessions): the :class:`Request` of one
execution, the rlimits and privilege drop a test child applies (:func:`rlimit_plan`,
:func:`child_setup`), the files it gets (:func:`open_io`), the clean-up after it (kill the
process group, every re-parented descendant, optionally every process and shared-dir file of
the sandbox uid), and the reading and classification of its result (:func:`read_result`).
"""

from __future__ import annotations

import _signal
import ctypes
import fcntl
import json
import math
import os
import resource
import shutil
import signal
import time
from dataclasses import dataclass, field

__all__ = ["Request", "child_setup", "devnull", "drops_uid", "fcntl_high", "kill_descendants", "killpg", "lib",
           "open_io", "pid_namespace_available", "read_file", "read_result", "remove_dir", "rlimit_plan",
           "sweep_shared_dirs", "sweep_uid"]

CLONE_NEWPID = 0x20000000
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_GET_DUMPABLE = 3
_SIGKILL = int(signal.SIGKILL)
_DEFAULT_SIGNALS = (int(signal.SIGPIPE), int(signal.SIGXFSZ), int(signal.SIGINT), int(signal.SIGTERM))
OLE_STDOUT_KEEP_BYTES = 4096
"""stdout bytes kept (and sent back) of a test whose stdout went over ``output_limit_bytes``."""
_MEMORY_MARKERS = ("MemoryError", "std::bad_alloc", "Cannot allocate memory", "out of memory")
_libc = None


def lib():
    """The C library (``prctl``, ``unshare``), loaded once."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


@dataclass
class Request:
    """One execution: a program (``argv`` to exec, or ``harness_cfg`` to run in-process)."""

    stdin_path: str
    io_dir: str
    work_dir: str
    limits: dict
    env: dict
    argv: list | None = None
    harness_cfg: dict | None = None
    uid: int | None = None
    gid: int | None = None
    sweep_uid: bool = False
    keep_work_dir: bool = False
    use_pid_namespace: bool = False
    session_key: str | None = None
    extra: dict = field(default_factory=dict)


_PIDNS: bool | None = None


def pid_namespace_available() -> bool:
    """Whether ``unshare(CLONE_NEWPID)`` is permitted here (probed once in a child)."""
    global _PIDNS
    if _PIDNS is None:
        pid = os.fork()
        if pid == 0:
            ok = lib().unshare(CLONE_NEWPID) == 0
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        _PIDNS = os.waitstatus_to_exitcode(status) == 0
    return _PIDNS


# ---------------------------------------------------------------- child side

def rlimit_plan(limits: dict, drop_uid: bool) -> tuple:
    """Return the ``(resource, (soft, hard))`` pairs a test child sets (computed before the fork)."""
    cpu = max(1, math.ceil(limits["cpu_time_limit_s"]))
    mem = int(limits["memory_limit_bytes"])
    fsize = int(max(limits["output_limit_bytes"], limits["stderr_limit_bytes"])) + 1
    address_space = mem + int(limits.get("address_space_slack_bytes", 256 << 20))
    nofile = int(limits["max_open_files"])
    plan = [(resource.RLIMIT_CORE, (0, 0)), (resource.RLIMIT_CPU, (cpu, cpu + 1)),
            (resource.RLIMIT_AS, (address_space, address_space)),
            (resource.RLIMIT_STACK, (min(mem, 256 << 20), min(mem, 256 << 20))),
            (resource.RLIMIT_FSIZE, (fsize, fsize)), (resource.RLIMIT_NOFILE, (nofile, nofile))]
    if drop_uid:
        nproc = int(limits["max_processes"])
        plan.append((resource.RLIMIT_NPROC, (nproc, nproc)))  # NPROC counts per uid: only after a drop
    return tuple(plan)


def fcntl_high(fd: int) -> int:
    """Return a close-on-exec duplicate of ``fd`` numbered >= 100 (out of the program's way)."""
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100)


def devnull() -> int:
    """A new read-write fd on ``/dev/null``."""
    return os.open(os.devnull, os.O_RDWR)


def drops_uid(req: Request) -> bool:
    """Whether the child will drop to the sandbox uid (only a root runner can)."""
    return req.uid is not None and os.geteuid() == 0


def child_setup(req: Request, plan: tuple) -> None:
    """Everything a test child does before the program, after its fds are in place.

    Args:
        req: the execution request.
        plan: :func:`rlimit_plan` of the limits to set.

    """
    libc = lib()
    libc.prctl(PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)
    os.chdir(req.work_dir)
    drop = drops_uid(req)
    for which, pair in plan:
        resource.setrlimit(which, pair)
    if drop:
        os.setgroups([])
        os.setgid(req.gid)  # type: ignore[arg-type]  # the runner always sets gid with uid
        os.setuid(req.uid)  # type: ignore[arg-type]  # drops_uid: not None
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    for sig in _DEFAULT_SIGNALS:
        _signal.signal(sig, 0)  # SIG_DFL; the C function skips signal.signal's enum conversions
    if req.argv is None:
        if os.environ:  # the zygote cleared its own environment at start; a fresh child has none
            os.environ.clear()
        os.environ.update(req.env)


# ---------------------------------------------------------------- executor side

def open_io(req: Request, io_dir: str) -> dict:
    """Open the test's stdin, stdout, stderr (and record/config) files; the fds by name."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    fds = {"stdin": os.open(req.stdin_path, os.O_RDONLY | os.O_CLOEXEC),
           "stdout": os.open(os.path.join(io_dir, "stdout"), flags, 0o600),
           "stderr": os.open(os.path.join(io_dir, "stderr"), flags, 0o600),
           "record": None, "cfg": None}
    if req.harness_cfg is not None:
        fds["record"] = os.open(os.path.join(io_dir, "record"), os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                                0o600)
        if req.argv is not None:
            path = os.path.join(io_dir, "cfg.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump(req.harness_cfg, f)
            fds["cfg"] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    return fds


def kill_descendants() -> bool:
    """Kill and reap every child of this (subreaper) process: escaped daemons land here.

    Returns:
        Whether there was any child to kill.

    """
    found = False
    for _ in range(20):
        pids: set[int] = set()
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/children") as f:
                    pids.update(int(p) for p in f.read().split())
            except OSError:
                continue
        if not pids:
            return found
        found = True
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
    return found


def killpg(pgid: int) -> bool:
    """SIGKILL process group ``pgid``; whether the group still had a member."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def sweep_uid(uid: int) -> None:
    """Kill every process owned by ``uid`` (for runners that own their sandbox uid)."""
    for _ in range(5):
        found = False
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/status") as f:
                    owner = next((line.split()[1] for line in f if line.startswith("Uid:")), None)
            except OSError:
                continue
            if owner == str(uid):
                found = True
                try:
                    os.kill(int(name), signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        if not found:
            return
        time.sleep(0.005)


_SHARED_WRITABLE_DIRS = ("/tmp", "/var/tmp", "/dev/shm")


def sweep_shared_dirs(uid: int) -> None:
    """Delete what ``uid`` left in world-writable dirs, so no file outlives its test."""
    for top in _SHARED_WRITABLE_DIRS:
        try:
            entries = list(os.scandir(top))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
            except OSError:
                pass


def remove_dir(path: str) -> None:
    """Remove a test's work dir: one rmdir when the program left it empty (the usual case)."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


def read_file(path: str, limit: int, keep_if_over: int | None = None) -> tuple[str, int, bool]:
    """``(text, size in bytes, truncated)`` of at most ``limit`` bytes of ``path``.

    With ``keep_if_over``, a file larger than ``limit`` gives only its first ``keep_if_over``
    bytes: output past the limit is a verdict (OLE), not data anyone compares, so it is
    neither read nor sent across the boundary.

    Reads exactly ``min(size, limit)`` bytes (the writers are dead by now): asking for
    ``limit`` bytes at once would make Python allocate a ``limit``-sized buffer (an mmap of
    the 64 MiB output limit plus an mremap) for every test.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return "", 0, False
    try:
        size = os.fstat(fd).st_size
        want = min(size, limit) if keep_if_over is None or size <= limit else min(keep_if_over, limit)
        chunks, got = [], 0
        while got < want:
            chunk = os.read(fd, want - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    finally:
        os.close(fd)
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return data.decode("utf-8", "replace"), size, size > limit


def _read_record(io_dir: str, nonce: str) -> dict | None:
    text, _, _ = read_file(os.path.join(io_dir, "record"), 256 << 20)
    head, _, body = text.partition("\n")
    if not nonce or head != nonce:
        return None
    try:
        record = json.loads(body)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _classify(req: Request, rep: dict, killed: bool, out_bytes: int, stderr: str, record) -> tuple[str, str | None]:
    limits = req.limits
    status = rep.get("status")
    sig = os.WTERMSIG(status) if status is not None and os.WIFSIGNALED(status) else None
    code = os.WEXITSTATUS(status) if status is not None and os.WIFEXITED(status) else None
    if rep.get("setup_error") and status is None or (rep.get("setup_error") and code == 127):
        return "IE", rep["setup_error"]
    if killed:
        return "TLE", None
    if status is None:
        return "IE", "no status from the supervisor"
    if sig == signal.SIGXCPU or rep["cpu_time_s"] > limits["cpu_time_limit_s"]:
        return "TLE", None
    if out_bytes > limits["output_limit_bytes"] or sig == signal.SIGXFSZ:
        return "OLE", None
    failed = sig is not None or code != 0
    memory_error = (record or {}).get("error_type") == "MemoryError" or any(
        m in stderr[-2000:] for m in _MEMORY_MARKERS)
    if rep["maxrss_kb"] * 1024 > limits["memory_limit_bytes"] or (failed and memory_error):
        return "MLE", None
    if failed:
        return "RE", None
    if req.harness_cfg is not None and req.harness_cfg["kind"] != "stdio" and record is None:
        return "RE", "exited 0 without the harness record (early exit?)"
    return "OK", None


def read_result(req: Request, io_dir: str, rep: dict, killed: bool, nonce: str, outer_wall: float) -> dict:
    """The TestRun fields of a finished execution: its files read back, its status classified."""
    limits = req.limits
    stdout, out_bytes, out_trunc = read_file(os.path.join(io_dir, "stdout"), int(limits["output_limit_bytes"]),
                                             keep_if_over=OLE_STDOUT_KEEP_BYTES)
    stderr, _, err_trunc = read_file(os.path.join(io_dir, "stderr"), int(limits["stderr_limit_bytes"]))
    record = _read_record(io_dir, nonce) if req.harness_cfg and req.harness_cfg["kind"] != "stdio" else None
    status = rep.get("status")
    verdict, error = _classify(req, rep, killed, out_bytes, stderr, record)
    return {"status": verdict,
            "exit_code": os.WEXITSTATUS(status) if status is not None and os.WIFEXITED(status) else None,
            "signal": os.WTERMSIG(status) if status is not None and os.WIFSIGNALED(status) else None,
            "cpu_time_s": round(rep.get("cpu_time_s", 0.0), 6),
            "wall_time_s": round(outer_wall if killed else rep.get("wall_time_s", outer_wall), 6),
            "peak_memory_bytes": int(rep.get("maxrss_kb", 0)) * 1024,
            "stdout": stdout, "stdout_bytes": out_bytes, "stdout_truncated": out_trunc,
            "stderr": stderr, "stderr_truncated": err_trunc, "record": record, "error": error,
            "pid_namespace": bool(rep.get("pid_namespace", False))}

