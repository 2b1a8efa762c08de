"""Shared fixtures: tiny model, shared data, and CI-aware requirement checks.

Tests that need an external resource (Docker engine, ``../shared/data``) skip with a
reason on a developer machine but *fail* under CI (``CI=true``), so a broken CI
set-up can never pass by skipping everything.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(ok: bool, reason: str) -> None:
    """Skip (developer machine) or fail (CI) when a requirement is missing."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"CI requirement missing: {reason}", pytrace=False)
    pytest.skip(reason)


def require_ray_serve() -> None:
    """Ray Serve importable: skip on a developer machine, fail in CI."""
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError:
        require(False, "Ray Serve is not installed: pip install -e '.[cluster]'")


def shared_data_dir() -> Path:
    root = Path(os.environ.get("ER_SHARED_DATA", REPO.parent / "shared" / "data"))
    return root


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or ``$ER_SHARED_DATA``); required in CI."""
    root = shared_data_dir()
    require(root.is_dir(), f"shared benchmark data not found at {root} (set ER_SHARED_DATA)")
    return root


def docker_available() -> tuple[bool, str]:
    if shutil.which("docker") is None:
        return False, "docker CLI not installed"
    try:
        proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"docker info failed: {exc}"
    if proc.returncode != 0:
        return False, f"Docker engine not reachable: {proc.stderr.strip()[:200]}"
    return True, ""


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A running Docker engine; required in CI."""
    ok, why = docker_available()
    require(ok, why)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny model written once per test session by ``er tiny-model``'s library call."""
    from er_tools.tiny_model import build_tiny_model

    out = tmp_path_factory.mktemp("tiny-model")
    build_tiny_model(out)
    return out


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory) -> Path:
    """The demo's model (``er demo``'s ``runs/demo/tiny-model``: the tiny model trained on every embedded problem),
    built once per test session."""
    from er_tools.demo_model import build_demo_model

    return build_demo_model(tmp_path_factory.mktemp("demo-model") / "tiny-model")


# resource fixtures -> markers, so `pytest -m docker` / `-m shared_data` select what needs them
_FIXTURE_MARKERS = {"docker_engine": "docker", "shared_data": "shared_data"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, marker in _FIXTURE_MARKERS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)
def vllm_available() -> tuple[bool, str]:
    """Whether real vLLM imports here (``make venv-vllm`` builds a venv where it does)."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return False, "vLLM is not installed in this venv (make venv-vllm; run with .venv-vllm/bin/python)"
    return True, ""


@pytest.fixture(scope="session")
def vllm_tiny_dir(tmp_path_factory) -> Path:
    """The tiny model's vLLM-loadable variant (head size 32, see ``er_tools.tiny_model.VLLM_OVERRIDES``)."""
    from er_tools.tiny_model import VLLM_OVERRIDES, build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model-vllm"), **VLLM_OVERRIDES)


@pytest.fixture(scope="session")
def vllm_module():
    """``import vllm`` with the CPU settings the tests use; required in CI (marker ``vllm``)."""
    ok, why = vllm_available()
    require(ok, why)
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process engine: ~4 s to build, not ~25 s
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB
    import vllm

    return vllm


@pytest.fixture(scope="session")
def vllm_llm(vllm_module, vllm_tiny_dir):
    """One real ``vllm.LLM`` on the tiny model (float32, prefix caching on), shared by the session."""
    return vllm_module.LLM(model=str(vllm_tiny_dir), dtype="float32", max_model_len=512, enforce_eager=True,
                           enable_prefix_caching=True, seed=0, disable_log_stats=False)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve_process(cmd: list[str], url: str, log: Path, *, env: dict | None = None, ready_s: float = 120,
                  what: str = "server") -> Iterator[str]:
    """Start a server process, wait until ``url/health`` answers 200, yield ``url``; stop it on exit.

    The test fails (with the log's tail) if the process exits or is not healthy within ``ready_s``.
    """
    import time

    import httpx

    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + ready_s
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{what} exited with {proc.returncode}:\n{log.read_text()[-3000:]}", pytrace=False)
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{what} not healthy after {ready_s:g} s:\n{log.read_text()[-3000:]}", pytrace=False)
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def vllm_server(vllm_module, vllm_tiny_dir, tmp_path_factory):
    """A real vLLM OpenAI API server process on loopback, serving the tiny model (float32, prefix caching).

    ``vllm serve`` itself fails with vllm-cpu (its distribution is not named ``vllm``), so
    the server module is run directly. Yields ``(base_url, model_name)``.
    """
    import sys

    port = _free_port()
    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "VLLM_ENABLE_V1_MULTIPROCESSING"}
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(vllm_tiny_dir),
           "--dtype", "float32", "--enforce-eager", "--max-model-len", "512", "--enable-prefix-caching",
           "--host", "127.0.0.1", "--port", str(port), "--seed", "0"]
    with serve_process(cmd, f"http://127.0.0.1:{port}", log, env=env, ready_s=240, what="vLLM server") as url:
        yield url, str(vllm_tiny_dir)


@pytest.fixture(scope="session")
def backend(tiny_model_dir):
    """An HF backend on the session's tiny model (CPU)."""
    from er_env.backends.hf import HFBackend

    return HFBackend(str(tiny_model_dir), device="cpu", batch_size=8)


@pytest.fixture(scope="session")
def prompts(backend) -> list[list[int]]:
    """Chat-formatted prompts of different lengths (math and code)."""
    from er_tools.tiny_model import tiny_prompts

    return [backend.chat_prompt(q) for q in tiny_prompts(4)]
