"""Fixtures for the evaluation tests: HF backends on the tiny models."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def long_context_model_dir(tmp_path_factory) -> Path:
    """A tiny model with a 2048-token context (Codeforces prompts are ~850+ tokens); random weights."""
    from er_tools.tiny_model import build_tiny_model

    out = tmp_path_factory.mktemp("tiny-model-2k")
    return build_tiny_model(out, max_position_embeddings=2048, train_steps=0)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op torch thread: faster for a model this small on a shared machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def eval_vllm_llm(tmp_path_factory):
    """A real vLLM engine (vllm-cpu) on a vLLM-loadable tiny model (head size 32) as a ``VLLMBackend``.

    Skips where vLLM is not installed, fails under ``CI=true`` (run these with the
    vLLM venv: ``.venv-vllm/bin/python -m pytest -m vllm``).
    """
    import importlib.util
    import os

    from tests.conftest import require

    require(importlib.util.find_spec("vllm") is not None, "vLLM is not installed in this venv (needs .venv-vllm)")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from er_env.backends.vllm import VLLMBackend
    from er_tools.tiny_model import build_tiny_model

    path = build_tiny_model(tmp_path_factory.mktemp("tiny-vllm-eval"), num_attention_heads=2, num_key_value_heads=1)
    backend = VLLMBackend(str(path), use_native_thinking_budget=True, dtype="float32", max_model_len=512,
                          enforce_eager=True, seed=0)  # built with a reasoning config: vllm_native can run too
    return path, backend
