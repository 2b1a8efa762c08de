"""DockerBackend (warm locked-down container pool): verdicts, lock-down facts, clean-up, failure recovery."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from docker_helpers import (  # noqa: F401
    assert_pool_clean,
    container_exec,
    docker_backend,
    execute,
    judge_with,
    stdio,
    worker_image,
)

from sandbox.core.errors import BackendUnavailable, SandboxError
from sandbox.core.judge import Submission
from sandbox.core.verdicts import Verdict
from sandbox.isolation.docker import RUNNER_CAPS, DockerBackend, DockerBackendConfig

pytestmark = pytest.mark.docker

ECHO_DOUBLE = "print(int(input()) * 2)"


@pytest.mark.parametrize("code,cases,expected", [
    (ECHO_DOUBLE, [("2", "4"), ("21", "42")], Verdict.AC),
    (ECHO_DOUBLE, [("2", "4"), ("3", "7")], Verdict.WA),
    ("while True:\n    pass", [("", "")], Verdict.TLE),
    ("import time\ntime.sleep(30)", [("", "")], Verdict.TLE),
    ("x = bytearray(600 * 1024 * 1024)\nprint(len(x))", [("", "")], Verdict.MLE),
    ("raise ValueError('boom')", [("", "")], Verdict.RE),
    ("def f(:\n  pass", [("", "")], Verdict.CE),
    ("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", [("", "")], Verdict.OLE),
], ids=["AC", "WA", "TLE-cpu", "TLE-sleep", "MLE", "RE", "CE", "OLE"])
def test_stdio_verdicts(docker_backend, code, cases, expected):
    result = judge_with(docker_backend).judge(stdio(code, cases))
    assert result.verdict is expected, result.to_dict()


def test_programs_can_import_what_leetcode_provides(docker_backend):
    code = "from sortedcontainers import SortedList\nprint(list(SortedList(map(int, input().split()))))"
    assert judge_with(docker_backend).judge(stdio(code, [("3 1 2", "[1, 2, 3]")])).verdict is Verdict.AC


def test_call_and_assert_harnesses(docker_backend):
    judge = judge_with(docker_backend)
    call = {"kind": "call", "fn_name": "add", "cases": [{"input": "1\n2", "output": "3"}, {"input": "[1]\n[2]",
                                                                                            "output": "[1, 2]"}]}
    src = "class Solution:\n    def add(self, a, b):\n        return a + b\n"
    assert judge.judge(Submission(code=src, spec=call)).verdict is Verdict.AC
    asserted = {"kind": "assert", "test_code": "def check(c):\n    assert c(2, 2) == 4\n\ncheck(Solution().add)"}
    assert judge.judge(Submission(code=src, spec=asserted)).verdict is Verdict.AC
    wrong = {"kind": "assert", "test_code": "def check(c):\n    assert c(2, 2) == 5\n\ncheck(Solution().add)"}
    assert judge.judge(Submission(code=src, spec=wrong)).verdict is not Verdict.AC


LOCKDOWN_PROBE = r"""
import os, socket
status = dict(l.split(':', 1) for l in open('/proc/self/status').read().splitlines() if ':' in l)
facts = {
    'uid': os.getuid(), 'groups': os.getgroups(),
    'cap_eff': status['CapEff'].strip(), 'cap_bnd_zero': int(status['CapBnd'], 16) & ~0 == int(status['CapBnd'], 16),
    'no_new_privs': status['NoNewPrivs'].strip(),
    'interfaces': sorted(os.listdir('/sys/class/net')),
    'dev_shm': os.path.exists('/dev/shm'),
}
try:
    open('/usr/er-probe', 'w')
    facts['rootfs'] = 'writable'
except OSError as exc:
    facts['rootfs'] = type(exc).__name__
print(repr(facts))
"""


def test_programs_run_unprivileged_without_network(docker_backend):
    out = execute(docker_backend, {"source": LOCKDOWN_PROBE, "tests": [{"stdin": ""}]})
    run = out["tests"][0]
    assert run["status"] == "OK", run
    facts = eval(run["stdout"])  # our own probe's repr of plain literals
    assert facts["uid"] >= 1_000_000 and facts["groups"] == []
    assert facts["cap_eff"] == "0000000000000000" and facts["no_new_privs"] == "1"
    assert facts["interfaces"] == ["lo"] and facts["dev_shm"] is False
    assert facts["rootfs"] in ("OSError", "PermissionError")


def test_container_host_config_is_locked_down(docker_backend):
    import docker

    client = docker.from_env()
    for cid in docker_backend.container_ids():
        host = client.api.inspect_container(cid)["HostConfig"]
        assert host["NetworkMode"] == "none" and host["IpcMode"] == "none" and host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"] and sorted(host["CapAdd"]) == sorted(RUNNER_CAPS)
        assert "no-new-privileges" in host["SecurityOpt"] and host["Init"] is True
        assert host["PidsLimit"] == 256 and host["Memory"] == host["MemorySwap"] > 0
        assert "noexec" in host["Tmpfs"]["/tmp"] and "mode=0711" in host["Tmpfs"]["/tmp"]


def test_each_container_has_its_own_sandbox_uid(docker_backend):
    from concurrent.futures import ThreadPoolExecutor

    job = {"source": "import os, time\ntime.sleep(0.3)\nprint(os.getuid())", "tests": [{"stdin": ""}]}
    with ThreadPoolExecutor(2) as pool:  # 2 at a time on a pool of 2: both containers are used
        outs = list(pool.map(lambda j: execute(docker_backend, j), [job] * 4))
    uids = {int(o["tests"][0]["stdout"]) for o in outs}
    assert len(uids) == 2 and all(u >= 1_000_000 for u in uids), uids


def test_nothing_left_behind_between_jobs(docker_backend):
    source = ("import os, subprocess, sys\n"
              "open('secret.txt', 'w').write('x' * 100000)\n"
              "os.makedirs('a/b/c', exist_ok=True)\nopen('a/b/c/d', 'w').write('y')\n"
              "os.chmod('a/b', 0)\n"  # an unreadable dir the runner must still wipe
              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True)\n"
              "print('ok')")
    for _ in range(2):  # both containers, probably
        out = execute(docker_backend, {"source": source, "tests": [{"stdin": ""}]})
        assert out["tests"][0]["stdout"] == "ok\n", out["tests"][0]
    assert_pool_clean(docker_backend)


def test_batch_runs_concurrently_and_correctly(docker_backend):
    judge = judge_with(docker_backend, max_concurrency=4)
    subs = [stdio(ECHO_DOUBLE, [(str(i), str(2 * i))]) for i in range(8)]
    subs.append(stdio(ECHO_DOUBLE, [("1", "3")]))
    verdicts = [r.verdict for r in judge.judge_batch(subs)]
    assert verdicts == [Verdict.AC] * 8 + [Verdict.WA]


def test_dead_container_is_replaced_and_the_job_retried(worker_image):
    with DockerBackend(image=worker_image, pool_size=1, auto_build=False) as backend:
        (cid,) = backend.container_ids()
        subprocess.run(["docker", "kill", cid], capture_output=True, check=True)
        out = execute(backend, {"source": "print(5)", "tests": [{"stdin": ""}]})
        assert out["tests"][0]["stdout"] == "5\n"
        health = backend.health()
        # replaced when handed out (its stream had closed) or, if the death was still in flight, on the retry
        assert health["recycled"] == 1 and health["retried"] <= 1 and health["live"] == 1
        assert backend.container_ids() != [cid]
        _wait_gone(cid)


def test_containers_that_died_idle_are_replaced_before_a_job_is_sent(worker_image):
    """Every idle container died: none is handed a job, so the single retry is not needed at all."""
    with DockerBackend(image=worker_image, pool_size=2, auto_build=False) as backend:
        dead = backend.container_ids()
        assert len(dead) == 2
        subprocess.run(["docker", "kill", *dead], capture_output=True, check=True)
        for cid in dead:
            _wait_gone(cid)  # auto_remove: gone means exited, and its attach stream closed
        out = execute(backend, {"source": "print(6)", "tests": [{"stdin": ""}]})
        assert out["tests"][0]["stdout"] == "6\n"
        health = backend.health()
        assert health["retried"] == 0 and health["recycled"] == 2, health
        assert not set(backend.container_ids()) & set(dead)


def test_silent_container_is_internal_error_not_a_verdict(worker_image):
    with DockerBackend(image=worker_image, pool_size=1, auto_build=False, transport_slack_s=1.0) as backend:
        (cid,) = backend.container_ids()
        subprocess.run(["docker", "pause", cid], capture_output=True, check=True)
        result = judge_with(backend, cpu_time_limit_s=0.5, wall_time_limit_s=1.0).judge(stdio("print(1)", [("", "1")]))
        assert result.verdict is Verdict.INTERNAL_ERROR and "no answer" in result.error
        assert backend.health()["recycled"] == 1
        # the replacement works
        assert judge_with(backend).judge(stdio("print(1)", [("", "1")])).verdict is Verdict.AC
        _wait_gone(cid)


def test_execute_raises_sandbox_error_when_closed(worker_image):
    backend = DockerBackend(image=worker_image, pool_size=1, auto_build=False)
    ids = backend.container_ids()
    backend.close()
    backend.close()  # idempotent
    with pytest.raises(SandboxError):
        execute(backend, {"source": "print(1)", "tests": [{"stdin": ""}]})
    for cid in ids:
        _wait_gone(cid)


def test_memory_limit_larger_than_the_container_is_internal_error(docker_backend):
    result = judge_with(docker_backend, memory_limit_bytes=8 << 30).judge(stdio("print(1)", [("", "1")]))
    assert result.verdict is Verdict.INTERNAL_ERROR and "DockerBackendConfig.memory_limit_bytes" in result.error


def test_a_crashed_owner_leaks_no_container(worker_image):
    script = ("import os, signal, sys\n"
              f"sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.dirname(__file__)))!r})\n"
              "from sandbox.isolation.docker import DockerBackend\n"
              f"b = DockerBackend(image={worker_image!r}, pool_size=2, auto_build=False)\n"
              "print(' '.join(b.container_ids()), flush=True)\n"
              "os.kill(os.getpid(), signal.SIGKILL)")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    ids = proc.stdout.split()
    assert len(ids) == 2 and proc.returncode == -9, proc.stderr[-2000:]
    for cid in ids:  # stdin EOF -> runner exits -> auto_remove
        _wait_gone(cid)


def test_missing_image_is_backend_unavailable(docker_engine):
    with pytest.raises(BackendUnavailable, match="docker_image"):
        DockerBackend(image="er-sandbox-worker:no-such-tag", auto_build=False)


def test_config_validation():
    with pytest.raises(ValueError, match="pool_size=0"):
        DockerBackendConfig(pool_size=0)
    with pytest.raises(ValueError, match="memory_limit_bytes"):
        DockerBackendConfig(memory_limit_bytes=1 << 20)


def test_worker_image_holds_only_the_stdlib_runner(worker_image):
    from sandbox.isolation.docker_image import SOURCE_LABEL, ensure_worker_image, image_label, worker_source_digest

    ensure_worker_image(worker_image)  # a no-op unless the runner changed since the session started
    assert image_label(worker_image, SOURCE_LABEL) == worker_source_digest()
    probe = ("import os, importlib.util as u\n"
             "print(sorted(os.listdir('/opt/er/lib/sandbox')), u.find_spec('sortedcontainers') is not None,"
             " u.find_spec('pip') is None)")
    out = subprocess.run(["docker", "run", "--rm", "--network", "none", worker_image, "python3", "-c", probe],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert "'runner'" in out and "'core'" in out and "'service'" not in out and "mathcheck" not in out
    assert out.strip().endswith("True True"), out  # programs get sortedcontainers (LeetCode has it); no pip


def test_worker_files_rejects_non_stdlib_imports(tmp_path):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "sandbox", "docker"))
    try:
        import worker_files
    finally:
        sys.path.pop(0)
    pkg = tmp_path / "sandbox"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "runner").mkdir()
    (pkg / "runner" / "__init__.py").write_text("")
    (pkg / "runner" / "job.py").write_text("import json\nfrom sandbox import helper\n")
    (pkg / "runner" / "socket_server.py").write_text("import socket\n")
    (pkg / "helper.py").write_text("def f():\n    import numpy\n")
    with pytest.raises(worker_files.NonStdlibImport, match="numpy"):
        worker_files.closure(str(tmp_path))
    (pkg / "helper.py").write_text("def f():\n    import math\n")
    assert worker_files.closure(str(tmp_path)) == ["sandbox/__init__.py", "sandbox/helper.py", "sandbox/runner/__init__.py",
                                                  "sandbox/runner/job.py", "sandbox/runner/socket_server.py"]


def _wait_gone(cid: str, timeout_s: float = 30.0) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if subprocess.run(["docker", "inspect", cid], capture_output=True).returncode != 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"container {cid[:12]} still exists {timeout_s} s after being recycled/closed")


def test_container_exec_helper_sees_the_pool(docker_backend):
    # sanity of the probe the clean-up assertions rely on: it does see a live program's process
    import threading

    t = threading.Thread(target=execute, args=(docker_backend, {"source": "import time\ntime.sleep(1.5)",
                                                                 "tests": [{"stdin": ""}]},))
    t.start()
    time.sleep(0.7)
    seen = [container_exec(cid, "import os\nprint(sum(1 for p in os.listdir('/proc') if p.isdigit() and "
                                "os.stat('/proc/' + p).st_uid != 0))") for cid in docker_backend.container_ids()]
    t.join()
    assert any(int(s) > 0 for s in seen), seen
