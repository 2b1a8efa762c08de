"""Process-level execution of ONE test for the runner (stdlib only, Linux).

Internal module; the protocol and the isolation rules are documented in
:mod:`sandbox.runner.job`. Every execution happens in the zygote (``python3 -m sandbox.runner.job
--zygote``), a dedicated single-threaded process that is a child subreaper
(``PR_SET_CHILD_SUBREAPER``) and never holds job data beyond the current test. Process tree
per test, default::

    zygote (subreaper)
      └─ program: setsid, dup2 fds, rlimits, chdir, drop uid, then exec or run in-process

With ``use_pid_namespace``::

    zygote
      └─ supervisor: setsid(); unshare(CLONE_NEWPID)
           └─ init (PID 1 of the new namespace): wait4(program), report rusage on a pipe
                └─ program

The zygote enforces the wall-clock limit (pidfd + poll) by killing the program's process
group. After each test it kills the process group, then every remaining child of its own:
any process the program left behind (even one that double-forked and called ``setsid``) is
re-parented to the zygote, the nearest subreaper, and killed there; with a PID namespace the
kernel kills them when the init exits. With ``sweep_uid`` every process of the sandbox uid
is killed as well (only when something outlived the program: given the subreaper, a process
of the uid can exist only then). Jobs with ``share_process`` run their tests in one session
child instead (see :mod:`sandbox.runner.session`); the pieces of one
execution live in :mod:`sandbox.runner.execution`.
"""

from __future__ import annotations

import gc
import json
import os
import select
import subprocess
import sys
import threading
import time
from typing import Any, Callable

from sandbox.runner import session as _session
from sandbox.runner.execution import (
    CLONE_NEWPID,
    PR_GET_DUMPABLE,
    PR_SET_CHILD_SUBREAPER,
    Request,
    child_setup,
    drops_uid,
    fcntl_high,
    kill_descendants,
    killpg,
    lib,
    open_io,
    read_result,
    remove_dir,
    rlimit_plan,
    sweep_shared_dirs,
    sweep_uid,
)

__all__ = ["execute", "end_session", "zygote_main"]


def _program(req: Request, fds: dict, err_w: int, plan: tuple) -> None:
    """Become the user program (never returns)."""
    try:
        high = {k: fcntl_high(v) for k, v in fds.items() if v is not None}
        err_w = fcntl_high(err_w)
        for name, target in (("stdin", 0), ("stdout", 1), ("stderr", 2), ("record", 3), ("cfg", 4)):
            if name in high:
                os.dup2(high[name], target)
        last = 4 if "cfg" in high else (3 if "record" in high else 2)
        os.closerange(last + 1, err_w)
        os.closerange(err_w + 1, 1 << 20)
        child_setup(req, plan)
        if req.argv is not None:
            argv = list(req.argv)
            if fds.get("cfg") is not None:
                argv += ["4", "3"]
            os.execve(argv[0], argv, req.env)
        os.close(err_w)
        from sandbox.runner import harness

        cfg = dict(req.harness_cfg or {})
        code = harness.run_harness(cfg, 3 if cfg["kind"] != "stdio" else None)
        os._exit(code)
    except BaseException as exc:  # noqa: BLE001 - setup failure: report and die
        try:
            os.write(err_w, f"{type(exc).__name__}: {exc}".encode()[:4000])
        finally:
            os._exit(127)


def _fork_program(req: Request, fds: dict, wait: Callable[[int], tuple[int, Any, bool]],
                  new_session: bool = False) -> tuple[dict, bool, int]:
    """Fork the program (its own session if ``new_session``), ``wait(pid) -> (status, rusage, killed)`` for it.

    Returns ``(report, killed, pid)``; the report holds the exit status, CPU time, peak RSS,
    wall time and what the child wrote to its setup-error pipe before exec.
    """
    err_r, err_w = os.pipe()
    plan = rlimit_plan(req.limits, drops_uid(req))
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(err_r)
        if new_session:
            os.setsid()
        _program(req, fds, err_w, plan)
    os.close(err_w)
    status, ru, killed = wait(pid)
    wall = time.monotonic() - start
    with os.fdopen(err_r, "rb") as f:
        setup_error = f.read(4000).decode("utf-8", "replace")
    report = {"status": status, "cpu_time_s": ru.ru_utime + ru.ru_stime, "maxrss_kb": ru.ru_maxrss,
              "wall_time_s": wall, "setup_error": setup_error or None}
    return report, killed, pid


def _wait4(pid: int) -> tuple[int, Any, bool]:
    _, status, ru = os.wait4(pid, 0)
    return status, ru, False


def _supervisor(req: Request, fds: dict, report_w: int) -> None:
    """Fork-side of the executor (never returns)."""
    code = 0
    try:
        os.setsid()
        pidns = req.use_pid_namespace and lib().unshare(CLONE_NEWPID) == 0
        if pidns:
            init = os.fork()
            if init:
                os.close(report_w)
                _, status = os.waitpid(init, 0)
                os._exit(0)
        report, _, _ = _fork_program(req, fds, _wait4)
        report["pid_namespace"] = bool(pidns)
        os.write(report_w, json.dumps(report).encode())
    except BaseException as exc:  # noqa: BLE001
        try:
            os.write(report_w, json.dumps({"setup_error": f"supervisor: {type(exc).__name__}: {exc}"}).encode())
        except OSError:
            pass
        code = 1
    os._exit(code)


def _wait_deadline(pid: int, deadline_s: float):
    """wait4 with a wall-clock deadline; kills the process group on expiry.

    Returns:
        ``(status, rusage, killed)``.

    """
    killed = False
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        killed = not poller.poll(max(0.0, deadline_s) * 1000)
        os.close(pidfd)
    else:
        end = time.monotonic() + deadline_s
        while not os.wait4(pid, os.WNOHANG)[0]:
            if time.monotonic() > end:
                killed = True
                break
            time.sleep(0.002)
    if killed:
        killpg(pid)
    _, status, rusage = os.wait4(pid, 0)
    return status, rusage, killed


def _run_direct(req: Request, fds: dict) -> tuple[dict, bool, int]:
    """One fork: the child calls setsid and becomes the program; wait4 gives its rusage."""
    rep, killed, pid = _fork_program(req, fds, lambda pid: _wait_deadline(pid, req.limits["wall_time_limit_s"]),
                                     new_session=True)
    rep["pid_namespace"] = False
    return rep, killed, pid


def _run_supervised(req: Request, fds: dict) -> tuple[dict, bool, int]:
    """Supervisor + init chain: the program runs in a fresh PID namespace."""
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(report_r)
        _supervisor(req, fds, report_w)
    os.close(report_w)
    _, _, killed = _wait_deadline(pid, req.limits["wall_time_limit_s"])
    with os.fdopen(report_r, "rb") as f:
        raw = f.read()
    try:
        rep = json.loads(raw) if raw else {}
    except ValueError:
        rep = {"setup_error": f"bad supervisor report {raw[:200]!r}"}
    return rep, killed, pid


def _execute_local(req: Request) -> dict:
    os.makedirs(req.work_dir, mode=0o700, exist_ok=True)
    if req.uid is not None and os.geteuid() == 0:
        os.chown(req.work_dir, req.uid, req.gid)  # type: ignore[arg-type]  # set together with uid
    io_dir = req.io_dir
    nonce = (req.harness_cfg or {}).get("nonce", "")
    fds = open_io(req, io_dir)
    start = time.monotonic()
    try:
        run = _run_supervised if req.use_pid_namespace else _run_direct
        rep, killed, pid = run(req, fds)
        strays = killpg(pid)
        strays = kill_descendants() or strays
        if req.sweep_uid and req.uid is not None:
            # Every process the program created descends from it, and the zygote is a child
            # subreaper: whatever outlived the program is either still in its process group or
            # re-parented to the zygote, so it was just killed above. Only if there was such a
            # stray (or a PID-namespace chain) can a process of the uid be left: then the full
            # /proc sweep runs (its cost grows with the number of processes on the host).
            if strays or req.use_pid_namespace:
                sweep_uid(req.uid)
            sweep_shared_dirs(req.uid)
        return read_result(req, io_dir, rep, killed, nonce, time.monotonic() - start)
    finally:
        for fd in fds.values():
            if fd is not None:
                os.close(fd)
        if not req.keep_work_dir:
            remove_dir(req.work_dir)


# ---------------------------------------------------------------- zygote

class _Zygote:
    """Client side of the zygote fork server (``python3 -m sandbox.runner.job --zygote``)."""

    def __init__(self) -> None:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "PYTHONHASHSEED": "0", "PYTHONINTMAXSTRDIGITS": "0", "PYTHONDONTWRITEBYTECODE": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "sandbox.runner.job", "--zygote"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env, cwd="/")

    def call(self, req: Request) -> dict:
        return self.call_raw(dict(req.__dict__))  # shallow: asdict() deep-copies every field

    def call_raw(self, msg: dict) -> dict:
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None  # Popen(stdin=PIPE, stdout=PIPE)
        stdin.write(json.dumps(msg).encode() + b"\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"zygote died (exit status {self.proc.poll()})")
        return json.loads(line)


_ZYGOTE: _Zygote | None = None
_ZYGOTE_LOCK = threading.Lock()


def execute(req: Request) -> dict:
    """Run one execution through the zygote (every fork happens there, never in the caller).

    Args:
        req: the execution request.

    Returns:
        The TestRun fields (see :mod:`sandbox.runner.job`) except ``index``/``matched``.

    """
    with _ZYGOTE_LOCK:
        return _execute_via_zygote(req)


def end_session() -> None:
    """End the zygote's shared-process session, if any (the runner calls it when a job ends)."""
    with _ZYGOTE_LOCK:
        if _ZYGOTE is not None and _ZYGOTE.proc.poll() is None:
            try:
                _ZYGOTE.call_raw({"op": "end_session"})
            except (OSError, RuntimeError, ValueError):
                pass


def _execute_via_zygote(req: Request) -> dict:
    global _ZYGOTE
    for attempt in range(2):
        if _ZYGOTE is None or _ZYGOTE.proc.poll() is not None:
            _ZYGOTE = _Zygote()
        try:
            return _ZYGOTE.call(req)
        except (OSError, RuntimeError, ValueError):
            _ZYGOTE.proc.kill()
            _ZYGOTE.proc.wait()
            _ZYGOTE = None
            if attempt:
                raise
    raise AssertionError("unreachable")


def zygote_main() -> None:
    """The fork server loop: one Request JSON per stdin line, one result JSON per line."""
    from sandbox.runner import harness

    harness.preload()
    lib().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    # Children start from this state: an empty environment (each sets its test's own, cheaper
    # than clearing an inherited one) and a ctypes prctl that has been called once (its first
    # call builds caches, which would otherwise cost every child copy-on-write faults).
    os.environ.clear()
    lib().prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)
    gc.freeze()  # pre-fork server practice: keep the preloaded heap out of the children's GC
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    session: Any = None
    result: dict[str, Any]
    for line in stdin:
        try:
            msg = json.loads(line)
            if msg.get("op") == "end_session":
                if session is not None:
                    session, old = None, session
                    old.end()
                result = {"ok": True}
            else:
                result, session = _dispatch(Request(**msg), session)
        except Exception as exc:  # noqa: BLE001 - report as an internal error of this test
            if session is not None:
                session, old = None, session
                try:
                    old.end()
                except Exception:  # noqa: BLE001
                    pass
            result = {"status": "IE", "error": f"zygote: {type(exc).__name__}: {exc}", "exit_code": None,
                      "signal": None, "cpu_time_s": 0.0, "wall_time_s": 0.0, "peak_memory_bytes": 0,
                      "stdout": "", "stdout_bytes": 0, "stdout_truncated": False, "stderr": "",
                      "stderr_truncated": False, "record": None, "pid_namespace": False}
        stdout.write(json.dumps(result).encode() + b"\n")
        stdout.flush()


def _dispatch(req: Request, session):
    """Run ``req`` in the zygote: in the job's shared-process session or in a fresh child.

    Returns:
        ``(result, session)``: the TestRun fields and the session still open (or None).

    """
    shared = (req.session_key and req.harness_cfg is not None and req.argv is None and not req.use_pid_namespace
              and _session.available())  # else: one fresh child per test, as without share_process
    if session is not None and not (shared and session.matches(req)):
        session, old = None, session
        old.end()
    if not shared:
        return _execute_local(req), None
    if session is None:
        session = _session.Session(req)
    result = session.run(req)
    return result, (session if session.alive else None)
