"""`sandbox/docker/setup_host.sh` step 1 keys on the Docker *engine*, not the client.

A fresh machine of this project's kind ships `/usr/local/bin/docker` (a client) and no engine; the
detection must then plan to install docker.io. These tests run the script's plan-only mode
(`ER_SETUP_PLAN_ONLY=1`, changes nothing) with a PATH that holds exactly the machine state to test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "sandbox" / "docker" / "setup_host.sh"


def _fake(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)


def _plan(bin_dir: Path) -> set[str]:
    # only the fakes plus the few real tools the script itself needs
    for tool in ("bash", "date", "dirname", "id", "env"):
        real = shutil.which(tool)
        assert real, tool
        (bin_dir / tool).symlink_to(real)
    out = subprocess.run(["bash", str(SCRIPT)], env={"PATH": str(bin_dir), "ER_SETUP_PLAN_ONLY": "1",
                         "HOME": os.environ.get("HOME", "/root")}, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith("missing:"), out.stdout
    return set(line.split(":", 1)[1].split())


def test_client_only_machine_installs_the_engine(tmp_path: Path) -> None:
    # `docker info` fails the way a client with no daemon fails
    _fake(tmp_path, "docker", 'echo "Cannot connect to the Docker daemon" >&2; exit 1')
    assert _plan(tmp_path) == {"docker.io", "debootstrap"}


def test_installed_engine_is_not_reinstalled(tmp_path: Path) -> None:
    _fake(tmp_path, "docker", "exit 1")  # engine installed but not started yet: step 2 starts it
    _fake(tmp_path, "dockerd", "exit 0")
    _fake(tmp_path, "debootstrap", "exit 0")
    assert _plan(tmp_path) == set()


def test_reachable_engine_without_local_dockerd(tmp_path: Path) -> None:
    _fake(tmp_path, "docker", "exit 0")  # `docker info` answers (e.g. a remote DOCKER_HOST)
    assert _plan(tmp_path) == {"debootstrap"}


def test_bare_machine(tmp_path: Path) -> None:
    assert _plan(tmp_path) == {"docker.io", "debootstrap"}
