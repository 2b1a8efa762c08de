"""Shared fixtures and probes for the Docker sandbox tests (imported by tests/sandbox/test_docker*.py etc.).

Every fixture here depends on ``docker_engine`` (tests/conftest.py): it skips on a machine
without Docker and FAILS under ``CI=true``. The worker image is built (or found up to date)
once per session by :func:`sandbox.isolation.docker_image.ensure_worker_image`.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from sandbox.core.jobs import RunJob
from sandbox.core.judge import Judge, JudgeConfig, Submission

# Small limits keep the adversarial programs short; memory well above Python's ~15 MB start-up.
TEST_LIMITS = dict(cpu_time_limit_s=1.0, wall_time_limit_s=2.0, memory_limit_bytes=256 << 20,
                   output_limit_bytes=1 << 20, stderr_limit_bytes=16 << 10)


@pytest.fixture(scope="session")
def worker_image(docker_engine) -> str:
    """Build the worker image if missing or stale and return its tag (a build failure is an error, never a skip)."""
    from sandbox.isolation.docker_image import ensure_worker_image

    return ensure_worker_image()


@pytest.fixture(scope="module")
def docker_backend(worker_image):
    """Start a warm pool of 2 locked-down containers, shared by the tests of one module."""
    from sandbox.isolation.docker import DockerBackend

    backend = DockerBackend(image=worker_image, pool_size=2, auto_build=False)
    yield backend
    backend.close()


def judge_with(backend, **overrides) -> Judge:
    """Build a Judge over ``backend`` with :data:`TEST_LIMITS` (overridable)."""
    return Judge(JudgeConfig(**{**TEST_LIMITS, **overrides}), backend)


def stdio(code: str, cases: list[tuple[str, str]], **spec_extra) -> Submission:
    """Build a stdio submission from ``(input, expected output)`` pairs."""
    return Submission(code=code, spec={"kind": "stdio", "cases": [{"input": i, "output": o} for i, o in cases],
                                       **spec_extra})


def container_exec(container_id: str, source: str, timeout_s: float = 30.0) -> str:
    """Run a Python snippet as root inside a container (``docker exec``) and return its stdout."""
    proc = subprocess.run(["docker", "exec", "-i", container_id, "python3", "-c", source], capture_output=True,
                          text=True, timeout=timeout_s)
    assert proc.returncode == 0, f"docker exec failed: {proc.stderr[-1000:]}"
    return proc.stdout


_LEFTOVERS = r"""
import json, os
procs = []
for pid in os.listdir('/proc'):
    if not pid.isdigit():
        continue
    try:
        with open(f'/proc/{pid}/status') as f:
            uid = next(int(l.split()[1]) for l in f if l.startswith('Uid:'))
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            cmd = f.read().replace(b'\0', b' ').decode(errors='replace')[:200]
    except (OSError, StopIteration):
        continue
    if uid != 0:
        procs.append([int(pid), uid, cmd])
tmp = sorted(os.listdir('/tmp'))
st = os.statvfs('/tmp')
print(json.dumps({"procs": procs, "tmp": tmp, "tmp_used_bytes": (st.f_blocks - st.f_bfree) * st.f_frsize}))
"""


def container_leftovers(container_id: str) -> dict:
    """List what a container holds between jobs: non-root processes, entries of /tmp, bytes used on /tmp."""
    return json.loads(container_exec(container_id, _LEFTOVERS))


def assert_pool_clean(backend) -> None:
    """Every container of a DockerBackend is idle-clean: no program process, no job dir left."""
    for cid in backend.container_ids():
        left = container_leftovers(cid)
        assert left["procs"] == [], f"processes survived in {cid[:12]}: {left['procs']}"
        assert left["tmp"] == [], f"files left in {cid[:12]}:/tmp: {left['tmp']}"
        assert left["tmp_used_bytes"] < (1 << 20), f"{cid[:12]}:/tmp still uses {left['tmp_used_bytes']} bytes"


def host_processes_of(uids: set[int]) -> list[tuple[int, int]]:
    """(pid, uid) of host processes whose real uid is in ``uids``."""
    import os

    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                uid = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        if uid in uids:
            found.append((int(pid), uid))
    return found


def execute(backend, wire_job: dict) -> dict:
    """Execute a RunJob given in its JSON form; the outcome back in its JSON form (the runner protocol)."""
    return backend.execute(RunJob.from_wire(wire_job)).to_wire()


def require(ok: bool, reason: str) -> None:
    """Skip (developer machine) or fail (``CI=true``) when a prerequisite is missing (as tests/conftest.py)."""
    if ok:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI requirement missing: {reason}", pytrace=False)
    pytest.skip(reason)
