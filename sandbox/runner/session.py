"""Shared-process sessions: the tests of ONE job run one after another in one forked child.

Internal module of the zygote (see :mod:`sandbox.runner.zygote`); used only for jobs with
``share_process: true`` (Python, ``fork`` mode, ``stdio``/``call`` harness, no PID namespace).
Why: a fork of the preloaded zygote plus the child's copy-on-write faults and exit cost
about 2-3 ms of CPU per test on a small machine, far more than a small test itself; in a
session that is paid once per job. LiveCodeBench runs all tests of a submission in one
process the same way.

What a session keeps per test (the guarantees of a fresh child that remain):

- fresh fds 0/1/2 (stdin file, empty stdout/stderr files), a fresh ``__main__`` module, the
  script-like interpreter state (``sys.argv``, recursion limit, random seed, cwd) and, for
  ``call``, a fresh nonce and record file;
- its own wall-clock limit, enforced from outside (the zygote kills the session's process
  group: TLE), its own CPU limit (``RLIMIT_CPU`` re-armed before each test, plus the CPU the
  zygote reads from ``/proc/<pid>/stat`` checked against the limit), the address-space and
  file-size limits of a fresh child, and its own peak memory (``VmHWM``, reset before each
  test through ``/proc/<pid>/clear_refs`` when the kernel allows, else the session's peak);
- the verdict of a fresh child: a test after the first that ends in RE, MLE or IE (which
  state left by earlier tests could cause) is run again in a fresh child, whose result counts;
- nothing of the program runs between tests: after each test the zygote checks that the
  child is single-threaded, has no child process, left nothing in its working dir and no
  process was re-parented to the zygote; otherwise, or after any non-OK test, the session
  ends (the usual kill + uid sweep + wipe) and the next test gets a fresh child. Files the
  program leaves in the shared writable dirs (/tmp, /var/tmp, /dev/shm) are deleted when
  the session ends (not between its tests: they are the same program's files).

What is shared (so use it only where tests of one submission need no isolation from each
other, which is no security boundary since they run the same program): module-level state
of imported modules (e.g. caches), the Python heap, and the same sandbox uid and process.
A program can tamper with the in-process harness for its own later tests, exactly as it
can within one test (see :mod:`sandbox.runner.harness`). Sessions never span two jobs: each job
has its own session key, and the runner ends its session when the job ends.
"""

from __future__ import annotations

import math
import os
import resource
import select
import socket
import time

from sandbox.runner import execution

__all__ = ["Session", "available", "session_child_main"]

_MAX_TESTS_PER_SESSION = 512
_RERUN_FRESH = ("RE", "MLE", "IE")
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def _proc_stat_cpu_s(pid: int) -> float:
    """Process-wide user+system CPU of ``pid`` (all threads) from /proc, in seconds."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * _TICK_S


def _proc_status(pid: int) -> dict:
    """``Threads`` and ``VmHWM`` (kB) of ``pid``."""
    out = {"threads": 1, "hwm_kb": 0}
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Threads:"):
                    out["threads"] = int(line.split()[1])
                elif line.startswith(b"VmHWM:"):
                    out["hwm_kb"] = int(line.split()[1])
    except OSError:
        pass
    return out


def _has_children(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
            return bool(f.read().strip())
    except OSError:
        return True


def _zygote_children() -> set[int]:
    pids: set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children", "rb") as f:
                pids.update(int(p) for p in f.read().split())
        except OSError:
            continue
    return pids


def _reset_peak(pid: int) -> bool:
    """Reset ``VmHWM`` of ``pid`` (``clear_refs`` 5); whether the kernel allowed it."""
    try:
        fd = os.open(f"/proc/{pid}/clear_refs", os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        os.write(fd, b"5")
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


_AVAILABLE: bool | None = None


def available() -> bool:
    """Whether sessions work here (they need ``pidfd_open``, Linux >= 5.3); probed once."""
    global _AVAILABLE
    if _AVAILABLE is None:
        try:
            os.close(os.pidfd_open(os.getpid()))
            _AVAILABLE = hasattr(socket, "send_fds")
        except (AttributeError, OSError):
            _AVAILABLE = False
    return _AVAILABLE


class Session:
    """One live shared-process child (zygote side)."""

    def __init__(self, req: execution.Request) -> None:
        self.key = req.session_key
        self.req = req
        self.work_dir = req.work_dir
        self.tests = 0
        os.makedirs(self.work_dir, mode=0o700, exist_ok=True)
        if req.uid is not None and os.geteuid() == 0:
            os.chown(self.work_dir, req.uid, req.gid)  # type: ignore[arg-type]  # set together with uid
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        err_r, err_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(err_r)
            parent_sock.close()
            os.setsid()
            session_child_main(req, child_sock.detach(), err_w)
        os.close(err_w)
        child_sock.close()
        self.pid, self.sock = pid, parent_sock
        self.err_r: int | None = err_r
        self.pidfd = os.pidfd_open(pid)
        self.alive = True
        self.ended = False
        self.threads = 1

    def matches(self, req: execution.Request) -> bool:
        """Whether ``req`` belongs to this session (same job key, uid and limits)."""
        return (self.alive and req.session_key == self.key and req.uid == self.req.uid
                and req.limits == self.req.limits and self.tests < _MAX_TESTS_PER_SESSION)

    def run(self, req: execution.Request) -> dict:
        """Run one test of the session; ends the session when it cannot safely go on."""
        io_dir = req.io_dir
        cfg = req.harness_cfg
        assert cfg is not None  # sessions run only harness (in-process) tests, see zygote._dispatch
        nonce = os.urandom(16).hex() if cfg["kind"] != "stdio" else ""
        fds = execution.open_io(req, io_dir)  # stdin, stdout, stderr, record (argv is None: no cfg fd)
        cfg_path = os.path.join(io_dir, "cfg.json")
        with open(cfg_path, "w", encoding="utf-8", errors="surrogatepass") as f:
            f.write(nonce + "\n" + (cfg.get("input") or ""))
        fds["cfg"] = os.open(cfg_path, os.O_RDONLY | os.O_CLOEXEC)
        first = self.tests == 0
        self.tests += 1
        try:
            _reset_peak(self.pid)
            cpu0 = _proc_stat_cpu_s(self.pid)
            start = time.monotonic()
            send = [fds["stdin"], fds["stdout"], fds["stderr"], fds["record"] or fds["stdin"], fds["cfg"]]
            try:
                socket.send_fds(self.sock, [b"t"], send)
            except OSError:
                pass  # the child died; the wait below reports it
        finally:
            for fd in fds.values():
                if fd is not None:
                    os.close(fd)
        reply, killed, died = self._wait(req.limits["wall_time_limit_s"])
        wall = time.monotonic() - start
        rep = self._finish_dead(cpu0, wall) if died else self._report(reply or b"", cpu0, wall)
        result = execution.read_result(req, io_dir, rep, killed, nonce, wall)
        if result["status"] in _RERUN_FRESH and not first:
            # A crash or memory failure might come from what earlier tests left in the process
            # (heap fragmentation under RLIMIT_AS, a peak that could not be reset, changed module
            # state): the verdict must be the one a fresh child gives, so run this test again in one.
            self.end()
            return self._rerun_fresh(req)
        if died or killed or result["status"] != "OK" or not self._clean():
            self.end()
        return result

    def _wait(self, deadline_s: float) -> tuple[bytes | None, bool, bool]:
        """``(reply, killed, died)`` for the current test (kills the child at the deadline).

        A closed socket alone does not end the wait (a program can close it and go on
        running): only the child's exit, a reply, or the deadline do.
        """
        poller = select.poll()
        sock_fd = self.sock.fileno()
        poller.register(sock_fd, select.POLLIN)
        poller.register(self.pidfd, select.POLLIN)
        end = time.monotonic() + max(0.0, deadline_s)
        while True:
            left = end - time.monotonic()
            events = poller.poll(left * 1000) if left > 0 else []
            if not events:
                execution.killpg(self.pid)
                return None, True, True
            for fd, _ in events:
                if fd == self.pidfd:
                    return None, False, True
                try:
                    data = self.sock.recv(256)
                except OSError:
                    data = b""
                if data:
                    return data, False, False
                poller.unregister(sock_fd)  # EOF: wait for the exit itself, under the deadline

    def _rerun_fresh(self, req: execution.Request) -> dict:
        fresh = Session(req)
        try:
            return fresh.run(req)
        finally:
            fresh.end()

    def _finish_dead(self, cpu0: float, wall: float) -> dict:
        _, status, ru = os.wait4(self.pid, 0)
        self.alive = False
        with os.fdopen(self.err_r, "rb") as f:  # type: ignore[arg-type]  # open until here
            setup_error = f.read(4000).decode("utf-8", "replace")
        self.err_r = None
        return {"status": status, "cpu_time_s": max(0.0, ru.ru_utime + ru.ru_stime - cpu0),
                "maxrss_kb": ru.ru_maxrss, "wall_time_s": wall, "setup_error": setup_error or None,
                "pid_namespace": False}

    def _report(self, reply: bytes, cpu0: float, wall: float) -> dict:
        try:
            code_text, cpu_text = reply.split()
            code, cpu_self = int(code_text) & 0xFF, float(cpu_text)
        except ValueError:
            code, cpu_self = 1, 0.0
        measured = _proc_stat_cpu_s(self.pid) - cpu0
        status = _proc_status(self.pid)
        self.threads = status["threads"]
        # CPU: the child's own count, but never less than what /proc says (tick resolution), so a
        # program that tampers with the in-process harness cannot hide its CPU use.
        return {"status": code << 8, "cpu_time_s": max(cpu_self, measured - 2 * _TICK_S, 0.0),
                "maxrss_kb": status["hwm_kb"], "wall_time_s": wall, "setup_error": None, "pid_namespace": False}

    def _clean(self) -> bool:
        """Nothing of the program outlived the test: one thread, no child, no stray, empty cwd."""
        if self.threads != 1 or _has_children(self.pid):
            return False
        if _zygote_children() - {self.pid}:
            return False
        try:
            with os.scandir(self.work_dir) as it:
                return next(it, None) is None
        except OSError:
            return False

    def end(self) -> None:
        """Kill the session's child and clean up as after a fork-per-test run. Idempotent."""
        if self.ended:
            return
        self.ended = True
        strays = execution.killpg(self.pid) if self.alive else False
        strays = execution.kill_descendants() or strays
        self.alive = False
        for closer in (self.sock.close, lambda: os.close(self.pidfd),
                       lambda: self.err_r is not None and os.close(self.err_r)):  # type: ignore[func-returns-value]
            try:
                closer()
            except OSError:
                pass
        req = self.req
        if req.sweep_uid and req.uid is not None:
            if strays:
                execution.sweep_uid(req.uid)
            execution.sweep_shared_dirs(req.uid)
        execution.remove_dir(self.work_dir)


# ---------------------------------------------------------------- child side

def session_child_main(req: execution.Request, sock_fd: int, err_w: int) -> None:
    """Run the session child: set up like a test child once, then tests on request (never returns)."""
    try:
        sock_fd = execution.fcntl_high(sock_fd)
        err_w = execution.fcntl_high(err_w)
        for fd in (0, 1, 2):
            os.dup2(execution.devnull(), fd)
        os.closerange(3, min(sock_fd, err_w))
        os.closerange(min(sock_fd, err_w) + 1, max(sock_fd, err_w))
        os.closerange(max(sock_fd, err_w) + 1, 1 << 20)
        limits = dict(req.limits)
        hard_cpu = (math.ceil(limits["cpu_time_limit_s"]) + 1) * _MAX_TESTS_PER_SESSION
        plan = execution.rlimit_plan({**limits, "cpu_time_limit_s": hard_cpu - 1}, execution.drops_uid(req))
        execution.child_setup(req, plan)
        os.close(err_w)
    except BaseException as exc:  # noqa: BLE001 - setup failure: report and die
        try:
            os.write(err_w, f"{type(exc).__name__}: {exc}".encode()[:4000])
        finally:
            os._exit(127)
    try:
        _serve_tests(req, sock_fd)
    except BaseException:  # noqa: BLE001 - the harness failed outside the program: report like a crash
        try:
            import traceback

            os.write(2, traceback.format_exc().encode("utf-8", "replace")[-4000:])
        finally:
            os._exit(1)
    os._exit(0)


def _serve_tests(req: execution.Request, sock_fd: int) -> None:
    """Run tests as the zygote sends them, until EOF.

    Everything the loop calls is bound before any program code runs, and it parses nothing
    with a library the program could patch: a program that breaks its own interpreter can
    fail its own later tests (which are then re-run in a fresh child, see ``_RERUN_FRESH``),
    but not this loop's report.
    """
    from sandbox.runner import harness

    run_harness, recv_fds, send = harness.run_harness, socket.recv_fds, socket.socket(fileno=sock_fd).send
    sock = send.__self__  # type: ignore[attr-defined]
    dup2, close, closerange, chdir, fdopen = os.dup2, os.close, os.closerange, os.chdir, os.fdopen
    getrusage, getrlimit, setrlimit, ceil = resource.getrusage, resource.getrlimit, resource.setrlimit, math.ceil
    self_usage, cpu_resource, work_dir = resource.RUSAGE_SELF, resource.RLIMIT_CPU, req.work_dir
    base = dict(req.harness_cfg or {})
    record_fd = 3 if base["kind"] != "stdio" else None
    cpu_limit = ceil(req.limits["cpu_time_limit_s"])
    while True:
        try:
            _, fds, _, _ = recv_fds(sock, 16, 5)
        except OSError:
            return
        if len(fds) != 5:
            return  # EOF: the session ended
        for target, fd in enumerate(fds[:4]):
            dup2(fd, target)
        with fdopen(fds[4], "rb") as f:
            nonce, _, test_input = f.read().decode("utf-8", "surrogatepass").partition("\n")
        for fd in fds[:4]:
            if fd > 3:  # 0-2 are always open, so a received fd is >= 3; 3 is now the record fd
                close(fd)
        chdir(work_dir)
        used = getrusage(self_usage)
        used_s = used.ru_utime + used.ru_stime
        hard = getrlimit(cpu_resource)[1]
        setrlimit(cpu_resource, (min(hard, ceil(used_s) + cpu_limit), hard))
        code = run_harness({**base, "input": test_input, "nonce": nonce}, record_fd, session=True)
        now = getrusage(self_usage)
        closerange(4, sock_fd)
        closerange(sock_fd + 1, 1 << 20)
        try:
            send(b"%d %.6f" % (code & 0xFF, now.ru_utime + now.ru_stime - used_s))
        except OSError:
            return
