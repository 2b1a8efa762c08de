"""Build (or find) the sandbox worker image for :mod:`sandbox.isolation.docker`.

The worker image holds python3 and the stdlib-only runner (``sandbox/docker/Dockerfile.worker``).
:func:`ensure_worker_image` builds it from a small temporary context (this installed ``sandbox``
package, nothing else), labels it with the sha256 of the runner files it contains, and skips the
build when an image with the same label already exists, so code changes to the runner always
reach the containers and an unchanged runner costs one ``docker image inspect``.

Base image: ``BASE_IMAGE`` build argument, resolved by :func:`default_base_image`: the
``ER_SANDBOX_BASE_IMAGE`` environment variable, else ``er-sandbox-base:local`` when present
(built offline by ``sandbox/docker/build_base_image.sh``), else ``python:3.11-slim``.

Uses the ``docker`` CLI (the legacy builder and BuildKit both read the same Dockerfile).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from sandbox.core.errors import BackendUnavailable

__all__ = ["WORKER_IMAGE", "LOCAL_BASE_IMAGE", "DEFAULT_BASE_IMAGE", "SOURCE_LABEL", "default_base_image",
           "worker_source_digest", "ensure_worker_image", "image_label"]

WORKER_IMAGE = "er-sandbox-worker:latest"
LOCAL_BASE_IMAGE = "er-sandbox-base:local"
DEFAULT_BASE_IMAGE = "python:3.11-slim"
SOURCE_LABEL = "er.sandbox.source-sha256"
_PACKAGE_DIR = Path(__file__).resolve().parents[1]
_DOCKER_DIR = _PACKAGE_DIR / "docker"


def _worker_files_module():
    spec = importlib.util.spec_from_file_location("_er_worker_files", _DOCKER_DIR / "worker_files.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def worker_source_digest() -> str:
    """Return the sha256 of what the worker image is built from.

    That is the runner files it contains (see ``worker_files.py``), its Dockerfile and build scripts.
    """
    wf = _worker_files_module()
    root = str(_PACKAGE_DIR.parent)
    build_files = ["Dockerfile.worker", "worker_files.py", "requirements-worker.txt", "install_program_packages.py"]
    return wf.digest(root, wf.closure(root) + [f"sandbox/docker/{name}" for name in build_files])


def _docker(*args: str, timeout_s: float = 60.0, check: bool = False) -> subprocess.CompletedProcess:
    if shutil.which("docker") is None:
        raise BackendUnavailable("the docker CLI is not installed; install Docker (https://docs.docker.com/engine/install/)")
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout_s)
    if check and proc.returncode != 0:
        raise BackendUnavailable(f"`docker {' '.join(args[:3])} ...` failed: {proc.stderr.strip()[-1500:]}")
    return proc


def image_label(image: str, label: str) -> str | None:
    """Return a label of a local image, or ``None`` (image absent, or no such label).

    Args:
        image: image reference.
        label: label key.

    Returns:
        The label value or ``None``.

    """
    proc = _docker("image", "inspect", "--format", f'{{{{index .Config.Labels "{label}"}}}}', image)
    if proc.returncode != 0:
        return None
    value = proc.stdout.strip()
    return None if value in ("", "<no value>") else value


def default_base_image() -> str:
    """``$ER_SANDBOX_BASE_IMAGE``, else the offline base if built locally, else ``python:3.11-slim``."""
    env = os.environ.get("ER_SANDBOX_BASE_IMAGE")
    if env:
        return env
    if _docker("image", "inspect", "--format", "{{.Id}}", LOCAL_BASE_IMAGE).returncode == 0:
        return LOCAL_BASE_IMAGE
    return DEFAULT_BASE_IMAGE


def ensure_worker_image(tag: str = WORKER_IMAGE, base_image: str | None = None, rebuild: bool = False,
                        timeout_s: float = 900.0) -> str:
    """Make sure ``tag`` exists and contains the current runner; build it if not.

    Args:
        tag: image tag to build/check.
        base_image: ``BASE_IMAGE`` build argument (default: :func:`default_base_image`).
        rebuild: build even when an up-to-date image exists.
        timeout_s: limit for the build.

    Returns:
        ``tag``.

    Raises:
        BackendUnavailable: Docker missing/unreachable or the build failed (the build log tail
            is in the message).

    """
    digest = worker_source_digest()
    if not rebuild and image_label(tag, SOURCE_LABEL) == digest:
        return tag
    base = base_image or default_base_image()
    with tempfile.TemporaryDirectory(prefix="er-worker-ctx-") as ctx:
        shutil.copytree(_PACKAGE_DIR, Path(ctx) / "sandbox",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "mathcheck", "wheels"))
        _stage_program_wheels(Path(ctx) / "build" / "docker-wheels")
        proc = _docker("build", "-q", "-f", str(Path(ctx) / "sandbox" / "docker" / "Dockerfile.worker"),
                       "--build-arg", f"BASE_IMAGE={base}", "--label", f"{SOURCE_LABEL}={digest}",
                       "-t", tag, ctx, timeout_s=timeout_s)
    if proc.returncode != 0:
        hint = (f"; no registry? build the offline base first: sudo bash {_DOCKER_DIR}/build_base_image.sh"
                if base == DEFAULT_BASE_IMAGE else "")
        raise BackendUnavailable(f"building {tag} from BASE_IMAGE={base} failed: {proc.stderr.strip()[-2000:]}{hint}")
    return tag


def _stage_program_wheels(dest: Path) -> None:
    """Put the wheels of ``requirements-worker.txt`` into the build context (no pip needed in the image).

    Taken from the repository's wheelhouse (``build/docker-wheels``, see ``build_wheelhouse.sh``) when it has
    them, else downloaded with this interpreter's pip; if both fail the Dockerfile falls back to pip inside the
    image (python:3.11-slim) and fails loudly where that is impossible.
    """
    dest.mkdir(parents=True, exist_ok=True)
    req = _DOCKER_DIR / "requirements-worker.txt"
    names = [line.split("==")[0].strip().lower().replace("-", "_") for line in req.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    house = _PACKAGE_DIR.parent / "build" / "docker-wheels"
    found = [w for w in house.glob("*.whl") if any(w.name.lower().startswith(n + "-") for n in names)]
    if len(found) >= len(names):
        for wheel in found:
            shutil.copy(wheel, dest)
        return
    import sys

    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                    "--only-binary=:all:", "--no-deps", "-r", str(req), "-d", str(dest)],
                   capture_output=True, timeout=300)


def main(argv: list[str] | None = None) -> int:
    """``python3 -m sandbox.isolation.docker_image [--tag T] [--base-image B] [--rebuild]``."""
    import argparse

    parser = argparse.ArgumentParser(description="Build the sandbox worker image if it is missing or stale.")
    parser.add_argument("--tag", default=WORKER_IMAGE, help=f"image tag (default {WORKER_IMAGE})")
    parser.add_argument("--base-image", default=None, help="BASE_IMAGE build arg (default: see default_base_image)")
    parser.add_argument("--rebuild", action="store_true", help="build even if an up-to-date image exists")
    args = parser.parse_args(argv)
    try:
        tag = ensure_worker_image(args.tag, args.base_image, args.rebuild)
    except BackendUnavailable as exc:
        print(f"error: {exc}", file=__import__("sys").stderr)
        return 1
    print(f"{tag} up to date (runner sha256 {worker_source_digest()[:12]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
