"""`er proxy` in front of a real `er serve` process (tiny model): equal to OpenAIBackend on it.

Budgets: one binding (thinking cut, solution cut) and one that does not bind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from er_tools.proxy.app import create_app
from er_tools.proxy.config import ProxyConfig
from tests.engine.test_openai_backend import _wait_healthy
from tests.proxy.fake_upstream import free_port, serve_in_thread
from tests.proxy.real_checks import check_proxy_equals_backend

MODEL = "tiny-r1"


@pytest.fixture(scope="module")
def er_serve(tiny_model_dir):
    port = _free = free_port()
    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH",
                                                                                                       "")])}
    proc = subprocess.Popen([sys.executable, "-m", "er_cli", "serve", "--model", str(tiny_model_dir), "--port",
                             str(_free), "--served-model-name", MODEL, "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=repo)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_proxy_equals_openai_backend_on_er_serve(er_serve, tiny_model_dir):
    cfg = ProxyConfig(upstream=er_serve, model=MODEL, tokenizer=str(tiny_model_dir))
    with serve_in_thread(create_app(cfg)) as url:
        made = check_proxy_equals_backend(url, er_serve, MODEL, str(tiny_model_dir), [(6, 4), (200, 200)])
    assert made == 8
