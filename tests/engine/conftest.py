"""Fixtures for the engine tests: backends on the tiny model (both </think> variants)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_multi_dir(tmp_path_factory) -> Path:
    """Build the tiny model with ``</think>`` spelled by several BPE tokens (briefly trained)."""
    from er_tools.tiny_model import build_tiny_model

    out = tmp_path_factory.mktemp("tiny-model-multi")
    return build_tiny_model(out, think_end_single_token=False, train_steps=60)




@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Run engine tests on one intra-op torch thread.

    For a model this small, extra threads only add contention (several times slower
    on a shared 2-core machine).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
