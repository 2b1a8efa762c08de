"""Stage the runner outside ``/tmp`` when a private ``/tmp`` would hide it (stdlib only).

The ``process`` backend mounts a fresh tmpfs on ``/tmp`` inside each worker's mount
namespace. When the checkout or the virtual environment lives under ``/tmp`` (a CI
clone, a scratch directory), that mount would hide the interpreter and the
``sandbox`` package from the runner's own zygote. In that case the runner's files (the
same stdlib-only closure the worker image gets, see ``sandbox/docker/worker_files.py``)
and the packages judged programs may import (``sandbox/docker/requirements-worker.txt``)
are copied to a root-only directory outside ``/tmp``, and the base interpreter is used.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

__all__ = ["hidden_by_private_tmp", "runner_launch"]

_REPO_ROOT = Path(__file__).resolve().parents[2]
_STAGE_ROOT = Path(os.environ.get("ER_SANDBOX_STAGE_DIR", "/var/cache/er-sandbox"))


def hidden_by_private_tmp(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` (resolved) lies under ``/tmp``."""
    real = os.path.realpath(path)
    return real == "/tmp" or real.startswith("/tmp/")


def _worker_files():
    path = _REPO_ROOT / "sandbox" / "docker" / "worker_files.py"
    spec = importlib.util.spec_from_file_location("_er_worker_files", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _program_packages() -> list[str]:
    req = _REPO_ROOT / "sandbox" / "docker" / "requirements-worker.txt"
    names = []
    for line in req.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line.split("==")[0].strip())
    return names


def _stage(root: Path) -> Path:
    wf = _worker_files()
    files = wf.closure(str(root))
    dest = _STAGE_ROOT / f"runner-{wf.digest(str(root), files)[:16]}"
    if (dest / "sandbox" / "runner" / "job.py").is_file():
        return dest
    tmp = dest.with_name(dest.name + f".{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    for rel in files:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, tmp / rel)
    for name in _program_packages():  # packages programs may import, if this interpreter has them
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            shutil.copytree(list(spec.submodule_search_locations)[0], tmp / name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
    os.chmod(_STAGE_ROOT, 0o700)
    try:
        os.replace(tmp, dest)
    except OSError:  # another process staged the same digest first
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def runner_launch(private_tmp: bool) -> tuple[str, str]:
    """The interpreter and ``PYTHONPATH`` a runner worker should start with.

    Args:
        private_tmp: whether the worker will mount a private ``/tmp``.

    Returns:
        ``(python, pythonpath)``: this interpreter and the checkout, or, when a
        private ``/tmp`` would hide them, the base interpreter and a staged copy.

    Raises:
        OSError: the base interpreter itself lives under ``/tmp`` (then run with
            ``private_tmp=False``), or the stage directory cannot be written.

    """
    python = sys.executable
    if not private_tmp or not (hidden_by_private_tmp(python) or hidden_by_private_tmp(_REPO_ROOT)):
        return python, str(_REPO_ROOT)
    base = os.path.realpath(getattr(sys, "_base_executable", None) or python)
    if hidden_by_private_tmp(base):
        raise OSError(
            f"the Python interpreter {base!r} lives under /tmp, which the process backend's private /tmp hides; "
            "install Python elsewhere or use ProcessBackend(private_tmp=False)")
    _STAGE_ROOT.mkdir(parents=True, exist_ok=True)
    return base, str(_stage(_REPO_ROOT))
