"""The base install (no extras) is light: budget protocol, environments and the reward client, no torch.

A trainer that only calls the reward cluster, or an RL loop with its own policy, installs
``elastic-reasoning-gym`` without extras. This test builds such an install in a fresh venv
(non-editable, base dependencies only) and uses it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "fastapi", "docker", "math-verify", "datasets", "trl", "vllm", "accelerate", "uvicorn")

USE = r'''
import importlib.util, sys, warnings
import gymnasium as gym
import er_env
from er_env.budget import Budget, BudgetTracker
from er_env.tokens import special_tokens
from sandbox.service.client import SandboxClient, SandboxUnavailable
from er_env.rewards import MathReward
for mod in ("torch", "fastapi", "docker", "math_verify"):
    assert importlib.util.find_spec(mod) is None, f"{mod} got installed by the base install"
warnings.simplefilter("ignore")
env = gym.make("ElasticReasoning-Math-v0", reward_fn=lambda ps, cs: [])
obs, info = env.reset(seed=0)
special = env.unwrapped.special
tracker = BudgetTracker(Budget(think=2, solution=2), special, list(obs["prompt_ids"]))
reward = MathReward("http://127.0.0.1:9", client_options={"max_retries": 0})
assert reward.__class__.__name__ == "MathReward"
client = SandboxClient("http://127.0.0.1:9", max_retries=0)
try:
    client.health()
except SandboxUnavailable:
    pass
print("light-ok")
'''


def test_base_dependencies_exclude_the_heavy_stacks():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower() for d in deps}
    assert not names & set(HEAVY), names & set(HEAVY)


@pytest.mark.slow
def test_base_install_works_without_torch(tmp_path):
    # a copy of the tracked tree: pip builds in-tree, and the checkout stays clean
    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    install = subprocess.run([str(py), "-m", "pip", "install", "-q", str(src)], capture_output=True, text=True,
                             timeout=900)
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-3000:]
    out = subprocess.run([str(py), "-c", USE], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0 and "light-ok" in out.stdout, out.stderr[-3000:]
