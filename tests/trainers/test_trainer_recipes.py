"""Recipes that fail on a laptop, not on a cluster: launch plans, accelerate configs, bad input, rehearsals."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
import yaml

from trainers.config import RECIPES_DIR, ConfigError, load_recipe
from trainers.launch import check_model_fits, format_plan, make_plan

REPO = Path(__file__).resolve().parents[2]
E1 = ["e1_math_1p5b", "e1_code_14b"]


def test_reward_endpoints_match_the_compose_gateway_port():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    published = {m.group(1) for svc in compose["services"].values() for port in svc.get("ports", [])
                 if (m := re.search(r":-?(\d+)\}?:\d+$", str(port)))}
    assert published == {"8080"}
    for path in RECIPES_DIR.glob("*.yaml"):
        endpoint = load_recipe(path).reward_endpoint
        if endpoint is not None:
            assert endpoint.rstrip("/").endswith(":8080"), (path.name, endpoint)


@pytest.mark.parametrize("name", E1)
def test_e1_recipes_default_to_vllm(name):
    cfg = load_recipe(name)
    assert cfg.backend == "vllm" and cfg.vllm_mode == "colocate"
    assert cfg.grpo["vllm_max_model_length"] >= 1024 + cfg.think_budget_tokens + 1 + cfg.solution_budget_tokens


@pytest.mark.parametrize("name,stage", [("deepspeed_zero3", "DEEPSPEED"), ("fsdp", "FSDP")])
def test_accelerate_configs_load(name, stage):
    from accelerate.commands.config.config_args import ClusterConfig

    cfg = ClusterConfig.from_yaml_file(str(RECIPES_DIR / "accelerate" / f"{name}.yaml"))
    assert cfg.distributed_type.name == stage
    if stage == "DEEPSPEED":
        assert cfg.deepspeed_config["zero_stage"] == 3
    else:
        assert cfg.fsdp_config["fsdp_version"] == 2


def test_multi_node_launch_is_printed_per_node_and_validated():
    cfg = load_recipe("e1_math_1p5b", {"num_machines": 2, "num_processes": 16, "main_process_ip": "10.0.0.1"})
    text = format_plan(make_plan(cfg, recipe="e1.yaml", check_endpoint=False))
    for rank in (0, 1):
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(f"node {rank}:"))
        assert f"--machine_rank {rank}" in line and f"--machine-rank {rank}" in line
        assert "--num_machines 2" in line and "--main_process_ip 10.0.0.1 --main_process_port 29500" in line
        assert "--num_processes 16" in line and "--config e1.yaml" in line
    assert "16 on 2 machines (main 10.0.0.1:29500)" in text
    with pytest.raises(ConfigError, match="needs main_process_ip"):
        load_recipe("e1_math_1p5b", {"num_machines": 2, "num_processes": 16})
    with pytest.raises(ConfigError, match=r"machine_rank must be an int in \[0, num_machines=2\)"):
        load_recipe("e1_math_1p5b", {"num_machines": 2, "num_processes": 16, "main_process_ip": "h", "machine_rank": 2})
    with pytest.raises(ConfigError, match="not divisible by num_machines=2"):
        load_recipe("e1_math_1p5b", {"num_machines": 2, "num_processes": 15, "main_process_ip": "h"})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_reward_endpoint_down_fails_before_the_model(monkeypatch, tmp_path):
    import trainers.launch as launch

    def no_model(*args, **kwargs):
        raise AssertionError("the model was resolved before the endpoint check")

    monkeypatch.setattr(launch, "resolve_model", no_model)
    url = f"http://127.0.0.1:{_free_port()}"
    cfg = load_recipe("tiny_cpu", {"reward_endpoint": url, "output_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match=re.escape(url) + ".*UNREACHABLE.*docker compose up"):
        launch.build_trainer(cfg)


def test_budgets_larger_than_the_context(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    check_model_fits(load_recipe("tiny_cpu"), str(tiny_model_dir), tok, [40])  # 40 + 16 + 1 + 16 fits in 512
    cfg = load_recipe("tiny_cpu", {"think_budget_tokens": 400, "solution_budget_tokens": 100})
    with pytest.raises(ConfigError, match=r"longest prompt \(40 tokens\).*= 541 tokens > the model's context \(512\)"):
        check_model_fits(cfg, str(tiny_model_dir), tok, [40])
    cfg = load_recipe("tiny_cpu", {"backend": "vllm", "grpo": {"vllm_max_model_length": 64}})
    with pytest.raises(ConfigError, match=r"> vllm_max_model_length \(64\)"):
        check_model_fits(cfg, str(tiny_model_dir), tok, [40])


def test_multi_token_think_end_is_refused_under_vllm(tiny_multi_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_multi_dir)
    check_model_fits(load_recipe("tiny_cpu"), str(tiny_multi_dir), tok, [10])  # fine for the hf backend
    with pytest.raises(ConfigError, match=r"spells '</think>' with \d+ tokens.*backend: hf"):
        check_model_fits(load_recipe("tiny_cpu", {"backend": "vllm"}), str(tiny_multi_dir), tok, [10])


@pytest.fixture(scope="session")
def tiny_multi_dir(tmp_path_factory) -> Path:
    from er_tools.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-multi"), think_end_single_token=False, train_steps=0)


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.parametrize("name", E1)
def test_e1_recipe_rehearsal_runs_one_cpu_step_on_vllm(name, vllm_module, vllm_tiny_dir, tmp_path):
    """``er train --config e1_* --rehearse``: the recipe's own settings, one real CPU step on TRL's vLLM."""
    from trainers.launch import rehearsal_config, train

    cfg = load_recipe(name, {"output_dir": str(tmp_path / name)})
    small = rehearsal_config(cfg, model=str(vllm_tiny_dir))
    assert small.backend == "vllm" and small.grpo["loss_type"] == cfg.grpo["loss_type"]
    assert small.grpo["learning_rate"] == cfg.grpo["learning_rate"] and small.num_processes == 1
    if small.reward_endpoint is not None:  # the gateway is not up in tests: grade in-process
        small = rehearsal_config(load_recipe(name, {"output_dir": str(tmp_path / name), "reward_endpoint": None}),
                                 model=str(vllm_tiny_dir))
    trainer = train(small)
    assert trainer.state.global_step == 1
    assert any(k.endswith("_cut_share") for h in trainer.state.log_history for k in h)
