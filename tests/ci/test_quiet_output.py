"""Commands print no deprecation warnings and no weight-loading bars (issue 26).

The demo's fast part and an evaluation run here on the tiny model; the 2-process training step is
checked in ``tests/trainers/test_trainer_distributed.py::test_two_rank_grpo_with_one_reward_service``
(plan printed once, the result once, the same checks), which runs that launch anyway.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.quiet_output import assert_quiet, noise

REPO = Path(__file__).resolve().parents[2]


def _er(*args: str, cwd: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "er_cli", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc.stdout + proc.stderr


def test_noise_detector_sees_the_warnings_it_must():
    assert noise("x.py:3: FutureWarning: `past_key_values` is deprecated\nfine\n") == [
        "x.py:3: FutureWarning: `past_key_values` is deprecated"]
    assert noise("[W reducer.cpp:1] Warning: find_unused_parameters=True was specified") != []
    assert noise("GRPOConfig: ddp_find_unused_parameters=False, seed=0") == []  # the plan line
    assert noise("Loading weights: 100%|###| 26/26") != []
    assert noise("reward 0.5, thinking tokens 12\n") == []


def test_demo_and_eval_print_no_warnings(tiny_model_dir, tmp_path):
    out = _er("demo", "--model", str(tiny_model_dir), "--budgets", "4:4,12:8", "--math-problems", "2",
              "--code-problems", "1", "--out", str(tmp_path / "demo"), cwd=tmp_path)
    assert "Budget t=12, s=8" in out
    assert_quiet(out, "er demo")
    out = _er("eval", "run", "--model", str(tiny_model_dir), "--dataset", "embedded:math", "--limit", "2",
              "--budgets", "8:8,none", "--max-tokens", "24", "--out", str(tmp_path / "eval"), cwd=tmp_path)
    assert "pass@1" in out
    assert_quiet(out, "er eval run")
