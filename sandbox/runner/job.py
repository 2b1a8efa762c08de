"""The in-boundary runner: executes one program against a list of tests (stdlib only).

This module runs INSIDE the isolation boundary (a Docker container, or the ``process``
backend's namespaced subprocess). It only reports what the program did; output
comparison happens outside, in :mod:`sandbox.core.judge`. (When a test carries ``expected``,
the runner compares too, but only to decide an early stop; the judge re-compares.)

Entry points:

- ``python3 -m sandbox.runner.job --serve``: reads one RunJob JSON object per line on stdin,
  writes one RunOutcome JSON object per line on stdout, until EOF. A malformed line gets
  an outcome with ``status="error"``; the loop goes on.
- :func:`run_job` ``(job: dict) -> dict``: the same, in-process.

RunJob (protocol 1; unknown keys are rejected)::

    {"protocol": 1,
     "language": "python" | "cpp",
     "source": "<program text>",
     "harness": {"kind": "stdio"}
              | {"kind": "call", "fn_name": "maxSum"}
              | {"kind": "assert", "test_code": "...", "prelude": null | "..."},
     "tests": [{"stdin": "...", "expected": "..."?}          # stdio
               | {"input": "<JSON per line>", "expected": "<JSON>"?}   # call
               | {}],                                         # assert (one test)
     "limits": {"cpu_time_limit_s": 6.0, "wall_time_limit_s": 12.0,
                "memory_limit_bytes": 1073741824, "output_limit_bytes": 67108864,
                "stderr_limit_bytes": 65536, "max_processes": 64, "max_open_files": 64,
                "address_space_slack_bytes": 268435456},  # RLIMIT_AS = memory + slack
     "stop_on_first_failure": true,
     "compare_mode": "lcb" | "lenient",           # early stop only
     "python_mode": "fork" | "exec",              # fork = zygote fast path (default)
     "sandbox_uid": 65534 | null, "sandbox_gid": 65534 | null,   # default 65534 when root
     "sweep_uid": false,                          # kill every process of sandbox_uid after each
                                                  # test (only if this runner owns the uid)
     "pid_namespace": false,                      # each test in a fresh PID namespace (2 more forks)
     "share_process": false,                      # python fork mode, stdio/call: the job's tests run one
                                                  # after another in ONE forked child (see below)
     "python_executable": null}                   # exec path interpreter (default: one the
                                                  # sandbox uid can execute)

All ``limits`` keys are optional (defaults: :data:`DEFAULT_LIMITS`, from :class:`sandbox.core.jobs.Limits`;
the typed form of this whole protocol is :mod:`sandbox.core.jobs`).

RunOutcome::

    {"protocol": 1,
     "status": "ok" | "compile_error" | "error",
     "error": null | "<runner-level failure: malformed job, setup failure>",
     "compile": null | {"ok": bool, "stderr": "...", "wall_time_s": float},
     "tests": [TestRun, ...],                     # in order; fewer than the job's if stopped early
     "stopped_early": bool,
     "runner": {"pid_namespace": bool, "uid": int|null, "python_mode": "...", "python": "3.11.7"}}

    TestRun = {"index": int,
               "status": "OK" | "RE" | "TLE" | "MLE" | "OLE" | "IE",
               "exit_code": int|null, "signal": int|null,
               "cpu_time_s": float, "wall_time_s": float, "peak_memory_bytes": int,
               "stdout": "...", "stdout_bytes": int, "stdout_truncated": bool,   # over the output
                                                  # limit (OLE): only the first 4 KiB of stdout
               "stderr": "...", "stderr_truncated": bool,
               "record": null | {...harness record, see sandbox.runner.harness...},
               "matched": null | bool,            # early-stop pre-check against "expected"
               "error": null | "<why IE>"}

Test status (what the program did; the judge maps it to a verdict):
``OK`` exit status 0 (and, for call/assert, a record with the nonce was written);
``RE`` non-zero exit or a signal; ``TLE`` wall-clock limit hit, or killed by/over the CPU
limit; ``MLE`` peak memory over the limit, or died of MemoryError / ``std::bad_alloc`` /
an allocation failure under the address-space limit; ``OLE`` stdout over
``output_limit_bytes`` (the file size limit stops the writer, the runner reads no more);
``IE`` the runner itself failed (setup, missing record after exit 0); never a user fault.

Isolation per test (each test is a fresh child, forked by the zygote, see
:mod:`sandbox.runner.zygote`): the child calls ``setsid`` (own session and process group). The zygote
is a child subreaper, so anything the program leaves behind, even a daemon that double-forks
and calls ``setsid``, is re-parented to it and killed after the test, together with the
process group; with ``sweep_uid`` every process of the sandbox uid is killed too, and every
file it left at the top of /tmp, /var/tmp and /dev/shm is deleted. With
``pid_namespace`` the program also runs in a fresh PID namespace (``unshare(CLONE_NEWPID)``;
about 2x the per-test cost), whose processes the kernel kills when its init exits. The
program gets: stdin from a file,
stdout/stderr to files in a root-only directory, a fresh working directory owned by the
sandbox uid (wiped after the test), ``setrlimit`` CPU (soft = limit, hard = limit + 1 s), AS
(memory limit + ``address_space_slack_bytes``: an interpreter maps far more than it touches,
so MLE is judged on peak RSS and AS only stops runaway allocation),
STACK, FSIZE (output limit + 1), NOFILE, CORE = 0, NPROC (only after dropping to the
sandbox uid, as NPROC counts per uid), ``PR_SET_NO_NEW_PRIVS``, ``PR_SET_PDEATHSIG``, a clean
environment, and, when the runner is root, ``setgroups([])``/``setgid``/``setuid`` to the
sandbox uid. Peak memory is ``ru_maxrss`` from ``wait4``.

Python execution (``python_mode``): ``exec`` runs ``python3 main.py`` (stdio) or
``python3 -I harness.py`` (call/assert) in the child: one fresh interpreter per test (about
8-10 ms each; the interpreter must be executable by the sandbox uid, see
``python_executable``). ``fork`` (default) runs the program in the forked zygote itself: the
zygote is a separate interpreter started with ``python3 -m sandbox.runner.job --zygote`` *before
it sees any job data*, which pre-imports :data:`sandbox.runner.harness.PRELOAD_MODULES` and the
harness preludes (then ``gc.freeze()``) and forks per test; the child drops privileges and runs the program
in-process as ``__main__`` with fresh ``sys.stdin``/``stdout``/``stderr`` on fds 0/1/2, exactly
as a script would (see :mod:`sandbox.runner.harness`). The zygote only ever holds the current
test's source and input, never expected outputs. C++ is compiled with ``g++`` as a sandboxed
execution (CE on failure) and the binary is exec'd per test.

Shared process (``share_process: true``; Python ``fork`` mode, ``stdio``/``call``, more than one
test, no PID namespace; otherwise ignored): the job's tests run one after another in ONE child
forked by the zygote, as LiveCodeBench runs a submission's tests, which makes a test about 5x
cheaper (no fork, no copy-on-write tax, no exit per test). Each test still gets fresh fds
0/1/2, a fresh ``__main__``, its own nonce, wall-clock limit (enforced from outside), CPU limit
and peak memory; the session ends (fresh child for the next test) as soon as a test is not OK
or leaves a thread, a process or a file behind, and a test after the first that ends RE/MLE/IE
is re-run in a fresh child so that state left by earlier tests cannot change a verdict.
Imported modules' state is shared between the tests of the job (never between jobs). Details
and the exact guarantees: :mod:`sandbox.runner.session`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

from sandbox.core.jobs import COMPILE_LIMITS as _COMPILE_LIMITS
from sandbox.core.jobs import DEFAULT_LIMITS as _DEFAULT_LIMITS
from sandbox.core.jobs import PROTOCOL_VERSION, FinishReason
from sandbox.runner import execution, zygote

__all__ = ["run_job", "serve", "DEFAULT_LIMITS", "PROTOCOL_VERSION", "TEST_STATUSES"]

TEST_STATUSES = tuple(reason.value for reason in FinishReason)
DEFAULT_LIMITS = _DEFAULT_LIMITS.to_wire()
COMPILE_LIMITS = _COMPILE_LIMITS.to_wire()
_JOB_KEYS = {"protocol", "language", "source", "harness", "tests", "limits", "stop_on_first_failure",
             "compare_mode", "python_mode", "python_executable", "sandbox_uid", "sandbox_gid", "sweep_uid",
             "pid_namespace", "share_process"}
_HARNESS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "harness.py")
_CXX = ("g++", "-O2", "-std=c++17", "-pipe", "-o", "main", "main.cpp")


class JobError(ValueError):
    """The RunJob is malformed (reported as ``status="error"``, never as a verdict)."""


def _validate(job: dict) -> dict:
    if not isinstance(job, dict):
        raise JobError(f"job must be a JSON object, got {type(job).__name__}")
    unknown = set(job) - _JOB_KEYS
    if unknown:
        raise JobError(f"unknown job keys {sorted(unknown)}; allowed: {sorted(_JOB_KEYS)}")
    if job.get("protocol", PROTOCOL_VERSION) != PROTOCOL_VERSION:
        raise JobError(f"protocol {job.get('protocol')!r} not supported; this runner speaks {PROTOCOL_VERSION}")
    if job.get("language", "python") not in ("python", "cpp"):
        raise JobError(f"language {job.get('language')!r} not supported; use 'python' or 'cpp'")
    if not isinstance(job.get("source"), str):
        raise JobError("job['source'] must be a string")
    harness = job.get("harness") or {"kind": "stdio"}
    kind = harness.get("kind")
    if kind not in ("stdio", "call", "assert"):
        raise JobError(f"harness kind {kind!r} unknown; use 'stdio', 'call' or 'assert'")
    if kind != "stdio" and job.get("language", "python") != "python":
        raise JobError(f"harness kind {kind!r} needs language 'python'")
    if kind == "call" and not isinstance(harness.get("fn_name"), str):
        raise JobError(f"call harness needs a string fn_name, got {harness.get('fn_name')!r}")
    if kind == "assert" and not isinstance(harness.get("test_code"), str):
        raise JobError("assert harness needs a string test_code")
    tests = job.get("tests")
    if not isinstance(tests, list) or not tests:
        raise JobError(f"job['tests'] must be a non-empty list, got {tests!r:.80}")
    limits = dict(DEFAULT_LIMITS)
    for key, value in (job.get("limits") or {}).items():
        if key not in DEFAULT_LIMITS:
            raise JobError(f"unknown limit {key!r}; allowed: {sorted(DEFAULT_LIMITS)}")
        if value is not None:
            if not isinstance(value, (int, float)) or value <= 0:
                raise JobError(f"limit {key}={value!r} must be a positive number")
            limits[key] = value
    if job.get("python_mode", "fork") not in ("fork", "exec"):
        raise JobError(f"python_mode {job.get('python_mode')!r} unknown; use 'fork' or 'exec'")
    if not isinstance(job.get("share_process", False), bool):
        raise JobError(f"share_process must be true or false, got {job.get('share_process')!r}")
    return {**job, "harness": harness, "limits": limits}


def _session_key(job: dict) -> str | None:
    """Return a key unique to this job when its tests may share one process (``share_process``)."""
    if (job.get("share_process") and job.get("language", "python") == "python"
            and job.get("python_mode", "fork") == "fork" and job["harness"]["kind"] in ("stdio", "call")
            and not job.get("pid_namespace") and len(job["tests"]) > 1):
        return os.urandom(16).hex()
    return None


def _sandbox_ids(job: dict) -> tuple[int | None, int | None]:
    uid, gid = job.get("sandbox_uid"), job.get("sandbox_gid")
    if os.geteuid() != 0:
        return None, None
    uid = 65534 if uid is None else int(uid)
    gid = uid if gid is None and job.get("sandbox_uid") is not None else (65534 if gid is None else int(gid))
    return uid, gid


def _python_check(source: str) -> str | None:
    """Syntax check with the stdlib compiler (no code runs); the error text or None."""
    try:
        compile(source, "main.py", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError) as exc:
        return "".join(__import__("traceback").format_exception_only(type(exc), exc))
    return None


def _user_env(work_dir: str) -> dict:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": work_dir, "TMPDIR": work_dir,
            "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8",
            "PYTHONINTMAXSTRDIGITS": "0", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}


def _compile_cpp(job_dir: str, job: dict, ids) -> dict:
    shutil.copy(os.path.join(job_dir, "main.cpp"), os.path.join(job_dir, "build", "main.cpp"))
    cxx = shutil.which(_CXX[0])
    if cxx is None:
        raise JobError("language 'cpp' needs g++ on PATH inside the sandbox; install it or use python")
    build = os.path.join(job_dir, "build")
    req = execution.Request(argv=[cxx, *_CXX[1:]], stdin_path=os.devnull, io_dir=os.path.join(job_dir, "io"),
                        work_dir=os.path.join(job_dir, "build"), limits=COMPILE_LIMITS,
                        uid=ids[0], gid=ids[1], env=_user_env(build), keep_work_dir=True)
    res = zygote.execute(req)
    if res["status"] == "IE":
        raise RuntimeError(f"compiler could not start: {res['error']}")
    ok = res["status"] == "OK" and os.path.exists(os.path.join(build, "main"))
    return {"ok": ok, "stderr": res["stderr"], "wall_time_s": res["wall_time_s"], "status": res["status"]}


def _test_request(job: dict, job_dir: str, index: int, test: dict, ids, binary: str | None,
                  session_key: str | None = None) -> execution.Request:
    harness = job["harness"]
    stdin_path = os.path.join(job_dir, "stdin")
    with open(stdin_path, "w", encoding="utf-8", errors="surrogatepass") as f:
        f.write(test.get("stdin", "") if harness["kind"] == "stdio" else "")
    work_dir = os.path.join(job_dir, f"t{index}")
    common = dict(stdin_path=stdin_path, io_dir=os.path.join(job_dir, "io"), work_dir=work_dir,
                  limits=job["limits"], uid=ids[0], gid=ids[1], env=_user_env(work_dir),
                  sweep_uid=bool(job.get("sweep_uid")), use_pid_namespace=bool(job.get("pid_namespace")))
    if binary is not None:
        return execution.Request(argv=[binary], **common)
    cfg = {"kind": harness["kind"], "source": job["source"], "filename": os.path.join(job_dir, "main.py"),
           "nonce": os.urandom(16).hex(), "fn_name": harness.get("fn_name"), "input": test.get("input", ""),
           "test_code": harness.get("test_code"), "prelude": harness.get("prelude")}
    if job.get("python_mode", "fork") == "fork":
        return execution.Request(harness_cfg=cfg, session_key=session_key, **common)
    python = _sandbox_python(job)
    if harness["kind"] == "stdio":
        return execution.Request(argv=[python, cfg["filename"]], **common)
    return execution.Request(argv=[python, "-I", os.path.join(job_dir, "harness.py")], harness_cfg=cfg, **common)


def _world_executable(path: str) -> bool:
    path = os.path.realpath(path)
    if not os.path.isfile(path) or not os.stat(path).st_mode & 0o001:
        return False
    parent = os.path.dirname(path)
    while parent not in ("/", ""):
        if not os.stat(parent).st_mode & 0o001:
            return False
        parent = os.path.dirname(parent)
    return True


def _sandbox_python(job: dict) -> str:
    """The interpreter for the exec path: one the sandbox uid can run."""
    if job.get("python_executable"):
        return job["python_executable"]
    for candidate in (sys.executable, "/usr/local/bin/python3", "/usr/bin/python3"):
        if candidate and _world_executable(candidate):
            return os.path.realpath(candidate)
    raise JobError(f"no Python executable usable by the sandbox uid (tried {sys.executable!r}, "
                   "/usr/local/bin/python3, /usr/bin/python3); set job['python_executable']")


def _matched(job: dict, test: dict, run: dict) -> bool | None:
    if "expected" not in test or run["status"] != "OK":
        return None
    from sandbox.core import compare

    kind = job["harness"]["kind"]
    if kind == "stdio":
        return compare.compare_output(run["stdout"], test["expected"], job.get("compare_mode", "lcb")).passed
    if kind == "call":
        return compare.compare_call(run.get("record"), test["expected"]).passed
    return None


def _failed(run: dict) -> bool:
    if run["status"] != "OK" or run["matched"] is False:
        return True
    record = run.get("record")
    return record is not None and not record.get("ok", False)


def run_job(job: dict) -> dict:
    """Run one RunJob (see the module docstring) and return its RunOutcome.

    Args:
        job: the RunJob dict.

    Returns:
        The RunOutcome dict. Never raises for program failures; a malformed job or a
        runner failure gives ``status="error"`` with the reason.

    """
    outcome: dict[str, Any] = {"protocol": PROTOCOL_VERSION, "status": "ok", "error": None, "compile": None,
               "tests": [], "stopped_early": False, "runner": _runner_info(job)}
    try:
        job = _validate(job)
    except JobError as exc:
        return {**outcome, "status": "error", "error": str(exc)}
    ids = _sandbox_ids(job)
    outcome["runner"]["uid"] = ids[0]
    job_dir = tempfile.mkdtemp(prefix="er-job-")
    try:
        return _run_in_dir(job, job_dir, ids, outcome)
    except Exception as exc:  # noqa: BLE001 - runner failure, reported as such
        return {**outcome, "status": "error", "error": f"runner failure: {type(exc).__name__}: {exc}"}
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)


def _run_in_dir(job: dict, job_dir: str, ids, outcome: dict) -> dict:
    os.chmod(job_dir, 0o711)
    os.mkdir(os.path.join(job_dir, "io"), 0o700)
    if job.get("python_mode") == "exec":
        shutil.copy(_HARNESS_PATH, os.path.join(job_dir, "harness.py"))
        os.chmod(os.path.join(job_dir, "harness.py"), 0o644)
    binary = None
    if job.get("language", "python") == "python":
        error = _python_check(job["source"])
        if error is not None:
            outcome.update(status="compile_error", compile={"ok": False, "stderr": error, "wall_time_s": 0.0})
            return outcome
        _write(os.path.join(job_dir, "main.py"), job["source"])
    else:
        _write(os.path.join(job_dir, "main.cpp"), job["source"])
        os.mkdir(os.path.join(job_dir, "build"), 0o700)
        if ids[0] is not None:
            os.chown(os.path.join(job_dir, "build"), ids[0], ids[1])
        outcome["compile"] = _compile_cpp(job_dir, job, ids)
        if not outcome["compile"]["ok"]:
            outcome["status"] = "compile_error"
            return outcome
        binary = os.path.join(job_dir, "main")
        shutil.copy(os.path.join(job_dir, "build", "main"), binary)
        os.chmod(binary, 0o755)
    tests = job["tests"] if job["harness"]["kind"] != "assert" else job["tests"][:1]
    session_key = _session_key(job) if binary is None else None
    try:
        for index, test in enumerate(tests):
            run = zygote.execute(_test_request(job, job_dir, index, test, ids, binary, session_key))
            run["index"] = index
            run["matched"] = _matched(job, test, run)
            outcome["tests"].append(run)
            if job.get("stop_on_first_failure", True) and _failed(run) and index < len(tests) - 1:
                outcome["stopped_early"] = True
                break
    finally:
        if session_key is not None:
            zygote.end_session()
    return outcome


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:
        f.write(text)
    os.chmod(path, 0o644)


def _runner_info(job) -> dict:
    mode = job.get("python_mode", "fork") if isinstance(job, dict) else "fork"
    pidns = bool(isinstance(job, dict) and job.get("pid_namespace")) and execution.pid_namespace_available()
    return {"pid_namespace": pidns, "uid": None, "python_mode": mode,
            "python": ".".join(map(str, sys.version_info[:3]))}


def serve(stdin=None, stdout=None) -> None:
    """The ``--serve`` loop: one RunJob per input line, one RunOutcome per output line.

    Args:
        stdin: binary input stream (default ``sys.stdin.buffer``).
        stdout: binary output stream (default ``sys.stdout.buffer``).

    """
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout.buffer
    for line in stdin:
        if not line.strip():
            continue
        try:
            job = json.loads(line)
        except ValueError as exc:
            outcome = {"protocol": PROTOCOL_VERSION, "status": "error", "error": f"bad JSON line: {exc}",
                       "compile": None, "tests": [], "stopped_early": False, "runner": _runner_info({})}
        else:
            outcome = run_job(job)
        stdout.write(json.dumps(outcome).encode() + b"\n")
        stdout.flush()


def main(argv: list[str] | None = None) -> None:
    """CLI: ``--serve`` (job loop), ``--zygote`` (internal fork server), ``--private-tmp[=SIZE]``."""
    argv = sys.argv[1:] if argv is None else argv
    for arg in argv:
        if arg == "--private-tmp" or arg.startswith("--private-tmp="):
            _mount_private_tmp(arg.partition("=")[2] or "512m")
    if "--zygote" in argv:
        zygote.zygote_main()
    elif "--serve" in argv:
        serve()
    else:
        print("usage: python3 -m sandbox.runner.job --serve [--private-tmp[=512m]]", file=sys.stderr)
        sys.exit(2)


def _mount_private_tmp(size: str) -> None:
    """Mount a fresh tmpfs of ``size`` (e.g. ``512m``) on /tmp (inside a private mount namespace only)."""
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"mode=1777,size={size}", "tmpfs", "/tmp"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"runner: private /tmp not mounted: {proc.stderr.strip()}", file=sys.stderr)


if __name__ == "__main__":
    main()
