"""The process isolation backend: namespaces, uid ownership, warm workers, recovery."""

import os

import pytest

from sandbox.core.errors import SandboxError
from sandbox.core.jobs import RunJob
from sandbox.isolation import get_backend
from sandbox.isolation.process import ProcessBackend


@pytest.fixture(scope="module")
def backend():
    b = get_backend("process", workers=2, base_uid=61500)
    yield b
    b.close()


def job(source, **extra):
    return {"source": source, "tests": [{"stdin": ""}], "limits": {"cpu_time_limit_s": 1, "wall_time_limit_s": 3},
            **extra}


def run(backend, wire_job):
    """Execute a RunJob given in its JSON form; the outcome back in its JSON form (the runner protocol)."""
    return backend.execute(RunJob.from_wire(wire_job)).to_wire()


def test_health_reports_what_was_applied(backend):
    health = backend.health()
    assert health["backend"] == "process" and health["ok"] and health["workers_alive"] == 2
    assert set(health["namespaces"]) | set(health["namespaces_refused"]) == {"net", "pid", "mount", "ipc", "uts"}


def test_programs_run_as_the_worker_uid_without_network(backend):
    source = ("import os, socket\nprint(os.getuid())\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=1)\n"
              "    print('net')\nexcept Exception:\n    print('no-net')")
    out = run(backend, job(source))
    uid, net = out["tests"][0]["stdout"].split()
    if os.geteuid() == 0:
        assert int(uid) in (61500, 61501)
    if "net" in backend.namespaces:
        assert net == "no-net"


def test_private_tmp(backend):
    if not backend.private_tmp:
        pytest.skip("no mount namespace here")
    marker = f"/tmp/er-process-backend-test-{os.getpid()}"
    out = run(backend, job(f"open({marker!r}, 'w').write('x')\nprint('wrote')"))
    assert out["tests"][0]["stdout"] == "wrote\n" and not os.path.exists(marker)


def test_files_left_in_shared_dirs_do_not_outlive_the_test(backend):
    if os.geteuid() != 0:
        pytest.skip("needs the uid drop (root)")
    leave = "import os\nfor d in ('/tmp', '/dev/shm'):\n    open(os.path.join(d, 'er-left-' + str(os.getuid())), 'w')\nprint('ok')"
    look = "import glob\nprint(len(glob.glob('/tmp/er-left-*') + glob.glob('/dev/shm/er-left-*')))"
    assert run(backend, job(leave))["tests"][0]["stdout"] == "ok\n"
    for _ in range(2):  # either worker
        assert run(backend, job(look))["tests"][0]["stdout"] == "0\n"


def test_worker_death_is_sandbox_error_then_recovers(backend):
    worker = backend._pool.workers()[0]
    worker.kill()
    outs = [run(backend, job("print(7)")) for _ in range(3)]
    assert all(o["tests"][0]["stdout"] == "7\n" for o in outs)
    assert backend.health()["workers_alive"] == 2


def test_workers_dead_before_the_pool_noticed_do_not_use_up_the_retry(monkeypatch):
    """Every idle worker died, and the pool still believes them alive: the job runs on a fresh one."""
    import signal

    b = ProcessBackend(workers=2)
    try:
        monkeypatch.setattr(b._pool, "_alive", lambda worker: True)  # deaths go unnoticed until written to
        for w in b._pool.workers():
            os.killpg(w.proc.pid, signal.SIGKILL)
            w.proc.wait()
        retries = b.job_retries
        assert run(b, job("print(7)"))["tests"][0]["stdout"] == "7\n"  # not INTERNAL_ERROR after one retry
        assert b.job_retries == retries + 2 and b.worker_restarts >= 2
    finally:
        b.close()


def test_a_pool_whose_workers_keep_dying_fails_instead_of_looping(monkeypatch):
    from sandbox.isolation import process

    b = ProcessBackend(workers=1)
    try:
        def gone(self, job, deadline_s):
            raise process._WorkerGone("process worker had exited before the job (exit status -9)")

        monkeypatch.setattr(process._Worker, "request", gone)
        with pytest.raises(SandboxError, match="exited before the job"):
            run(b, job("print(1)"))
        assert b.job_retries == 2  # 2 * workers hand-outs after the first
    finally:
        b.close()


def test_hung_worker_times_out_as_sandbox_error():
    b = ProcessBackend(workers=1, transport_slack_s=0.5)
    try:
        b._pool.workers()[0].proc.stdin.write(b"")  # worker is alive
        os.killpg(b._pool.workers()[0].proc.pid, 19)  # SIGSTOP the worker group: it hangs
        with pytest.raises(SandboxError, match="no answer"):
            run(b, {"source": "print(1)", "tests": [{"stdin": ""}], "limits": {"wall_time_limit_s": 0.5}})
        assert run(b, job("print(1)"))["tests"][0]["stdout"] == "1\n"
    finally:
        b.close()
    with pytest.raises(SandboxError, match="closed"):
        run(b, job("print(1)"))


def test_private_tmp_is_bounded(backend):
    if not backend.private_tmp:
        pytest.skip("no mount namespace here")
    source = ("import os\nst = os.statvfs('/tmp')\nprint(st.f_blocks * st.f_frsize // (1 << 20))")
    out = run(backend, job(source))
    assert int(out["tests"][0]["stdout"]) == backend.health()["tmp_size_mb"] == 512


@pytest.mark.parametrize("size, status", [(24 << 20, "OK"), (65 << 20, "OLE")])
def test_output_flood_comes_back_whole_below_the_limit_and_cut_above(backend, size, status):
    # issue 11: a big answer line is read in linear time (LineBuffer); past the limit only 4 KiB travel
    out = run(backend, job(f"import sys\nsys.stdout.write('A' * {size})",
                              limits={"cpu_time_limit_s": 5, "wall_time_limit_s": 20}))
    test = out["tests"][0]
    assert test["status"] == status and test["stdout_bytes"] >= min(size, (64 << 20) + 1)
    assert len(test["stdout"]) == (size if status == "OK" else 4096)
