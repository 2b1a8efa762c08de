"""The resource planner (trainers.plan): against DeepSpeed's estimators, transformers' meta-device models,
the shipped recipes, and bad input."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.trainers.plan_shapes import RECIPE_SHAPES, SHAPES, write_shape
from trainers.config import ConfigError, load_recipe
from trainers.plan import compute_plan, model_state_bytes, plan_run
from trainers.plan_inputs import Engine, ModelShape, PlanError, parse_gpu, read_engine

ROOT = Path(__file__).resolve().parents[2]
DS_SHAPES = ["r1-distill-qwen-1.5b", "r1-distill-qwen-7b", "r1-distill-qwen-14b", "llama-3.1-8b"]


def _shape(name: str) -> ModelShape:
    return ModelShape.from_config(SHAPES[name], name)


@pytest.mark.parametrize("name", DS_SHAPES)
@pytest.mark.parametrize("nodes,gpus_per_node", [(1, 1), (1, 8), (2, 8)])
def test_model_states_agree_with_deepspeed_estimators(name, nodes, gpus_per_node, capsys):
    from deepspeed.runtime.zero import stage3, stage_1_and_2  # the [plan] extra (make venv installs it)

    shape, gpus = _shape(name), nodes * gpus_per_node
    n, largest = shape.parameters, shape.largest_layer_parameters
    # the *_all_cold tables print what the no-argument helpers return; read the GPU column of each
    stage3.estimate_zero3_model_states_mem_needs_all_cold(n, largest, gpus_per_node, nodes)
    stage_1_and_2.estimate_zero2_model_states_mem_needs_all_cold(n, gpus_per_node, nodes)
    assert "per GPU" in capsys.readouterr().out
    cases = [
        (Engine("zero", zero_stage=3), stage3.estimate_zero3_model_states_mem_needs(
            n, largest, gpus_per_node, nodes, cpu_offload=False, cpu_offload_params=False)[1]),
        (Engine("zero", zero_stage=3, offload_optimizer=True), stage3.estimate_zero3_model_states_mem_needs(
            n, largest, gpus_per_node, nodes, cpu_offload=True, cpu_offload_params=False)[1]),
        (Engine("zero", zero_stage=3, offload_optimizer=True, offload_params=True),
         stage3.estimate_zero3_model_states_mem_needs(n, largest, gpus_per_node, nodes)[1]),
        (Engine("zero", zero_stage=2), stage_1_and_2.estimate_zero2_model_states_mem_needs(
            n, gpus_per_node, nodes, cpu_offload=False)[1]),
        (Engine("zero", zero_stage=1, offload_optimizer=True), stage_1_and_2.estimate_zero2_model_states_mem_needs(
            n, gpus_per_node, nodes, cpu_offload=True)[1]),
    ]
    for engine, reference in cases:
        ours = model_state_bytes(shape, engine, gpus)
        assert abs(ours - reference) / reference < 0.03, (engine, ours, reference)


@pytest.mark.parametrize("name", list(SHAPES))
def test_parameter_counts_equal_the_meta_device_model(name):
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(**SHAPES[name])
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    model.tie_weights()  # as from_pretrained does (on the meta device from_config leaves a tied head untied)
    params = list(model.parameters())  # tied weights are yielded once
    shape = _shape(name)
    assert shape.parameters == sum(p.numel() for p in params)
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    assert shape.largest_layer_parameters == largest
    assert shape.layer_parameters == sum(p.numel() for p in model.model.layers[0].parameters())


@pytest.mark.parametrize("recipe", sorted(RECIPE_SHAPES))
def test_every_shipped_gpu_recipe_fits_and_its_header_states_the_plan(recipe, tmp_path):
    model = write_shape(tmp_path, RECIPE_SHAPES[recipe])
    cfg = load_recipe(recipe, {"model": str(model)})
    plan, text = plan_run(cfg, "a100-80gb")
    assert plan.fits, text
    header = (ROOT / "trainers" / "recipes" / f"{recipe}.yaml").read_text(encoding="utf-8")
    peak = f"{plan.peak / 2**30:.1f} GiB"
    assert f"peak {peak}" in header, f"{recipe}.yaml's header should state its plan's peak ({peak}):\n{text}"


def test_every_gpu_recipe_is_planned_here():
    shipped = {p.stem for p in (ROOT / "trainers" / "recipes").glob("*.yaml")}
    cpu = {name for name in shipped if load_recipe(name, {"model": "x/y"}).grpo.get("use_cpu")}
    assert shipped - cpu == set(RECIPE_SHAPES)


def test_the_old_14b_recipe_is_refused_with_settings_that_fit(tmp_path):
    model = write_shape(tmp_path, "r1-distill-qwen-14b")
    cfg = load_recipe("e1_code_14b", {"model": str(model), "grpo": {"vllm_gpu_memory_utilization": 0.3,
                                                                      "vllm_enable_sleep_mode": False}})
    plan, text = plan_run(cfg, "h100-80gb")
    assert not plan.fits and plan.vllm is not None and plan.vllm.kv_cache < 0
    assert "vLLM would refuse to start" in text and "settings that fit" in text
    fix = next(line for line in text.splitlines() if "vllm_enable_sleep_mode: true" in line)
    util = float(fix.split("vllm_gpu_memory_utilization: ")[1].split()[0])
    fixed = load_recipe("e1_code_14b", {"model": str(model), "grpo": {"vllm_gpu_memory_utilization": util,
                                                                        "vllm_enable_sleep_mode": True}})
    assert plan_run(fixed, "h100-80gb")[0].fits


def test_plan_exit_codes_and_no_torch(tmp_path):
    model = write_shape(tmp_path, "r1-distill-qwen-1.5b")
    code = ("import sys; from trainers.config import ERTrainConfig; from trainers.plan import plan_run;"
            f"cfg = ERTrainConfig(model={str(model)!r}, dataset='embedded:math', backend='vllm', num_processes=1);"
            "plan, text = plan_run(cfg, 'a100-40gb'); print(text); assert 'torch' not in sys.modules, 'torch';"
            "print('NO-TORCH')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert "NO-TORCH" in out.stdout, out.stderr
    ok = subprocess.run([sys.executable, "-m", "er_cli", "train", "--config", "e1_math_1p5b_4gpu", "--model",
                         str(model), "--plan", "--gpu", "h100"], cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0 and "FITS" in ok.stdout, ok.stdout + ok.stderr
    bad = subprocess.run([sys.executable, "-m", "er_cli", "train", "--config", "e1_math_1p5b_4gpu", "--model",
                          str(model), "--plan", "--gpu", "custom:16"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 1 and "DOES NOT FIT" in bad.stdout, bad.stdout + bad.stderr


def test_kv_cache_and_activation_arithmetic():
    shape = _shape("r1-distill-qwen-14b")
    assert shape.kv_bytes_per_token() == 2 * 48 * 8 * 128 * 2
    assert shape.kv_bytes_per_token(tensor_parallel=2) == shape.kv_bytes_per_token() // 2
    assert shape.kv_bytes_per_token(tensor_parallel=16) == 2 * 48 * 1 * 128 * 2  # replicated past the KV heads
    cfg = load_recipe("e1_code_14b", {"model": "x/y"})
    from trainers.plan import settings_from_config

    s = settings_from_config(cfg, shape, "code")
    gpu = parse_gpu("a100-80gb")
    on = compute_plan(shape, s, Engine("zero", zero_stage=3), gpu)
    off = compute_plan(shape, dataclasses.replace(s, gradient_checkpointing=False), Engine("zero", zero_stage=3), gpu)
    assert off.training_peak > on.training_peak and off.activations_other < dict(off.trainer)[
        next(k for k in dict(off.trainer) if k.startswith("activations"))]


@pytest.mark.parametrize("field,value,needle", [
    ("hidden_size", None, "field 'hidden_size' is missing"),
    ("vocab_size", "big", "field 'vocab_size'"),
    ("model_type", "gpt2", "model_type 'gpt2' is not one the planner knows"),
])
def test_config_without_needed_fields(tmp_path, field, value, needle):
    model = write_shape(tmp_path, "r1-distill-qwen-1.5b", **{field: value})
    cfg = load_recipe("e1_math_1p5b", {"model": str(model)})
    with pytest.raises(PlanError, match=needle):
        plan_run(cfg, "a100-80gb")


def test_bad_gpu_tp_and_lengths(tmp_path):
    with pytest.raises(PlanError, match=r"--gpu 'h10' is not a known card\. Did you mean"):
        parse_gpu("h10")
    with pytest.raises(PlanError, match="custom:<GiB> needs a positive size"):
        parse_gpu("custom:lots")
    assert parse_gpu("custom:24").memory_bytes == 24 * 2**30
    model = write_shape(tmp_path, "r1-distill-qwen-1.5b")
    with pytest.raises(PlanError, match=r"grpo.vllm_tensor_parallel_size=3 does not divide|does not divide the "):
        plan_run(load_recipe("e1_math_1p5b", {"model": str(model), "grpo": {"vllm_tensor_parallel_size": 3}}), "h100")
    with pytest.raises(PlanError, match="vllm_tensor_parallel_size=2 does not divide num_processes=1"):
        plan_run(load_recipe("e1_math_1p5b_1gpu", {"model": str(model),
                                                     "grpo": {"vllm_tensor_parallel_size": 2}}), "h100")
    with pytest.raises(PlanError, match="refused by Elastic Reasoning rollouts"):
        plan_run(load_recipe("e1_math_1p5b", {"model": str(model), "grpo": {"vllm_tensor_parallel_size": 2}}), "h100")
    with pytest.raises(PlanError, match=r"= 4097 tokens > grpo.vllm_max_model_length \(4096\): raise"):
        plan_run(load_recipe("e1_math_1p5b", {"model": str(model), "max_prompt_tokens": 2048}), "h100")
    short = write_shape(tmp_path / "short", "r1-distill-qwen-1.5b", max_position_embeddings=2048)
    with pytest.raises(PlanError, match=r"> the model's context \(max_position_embeddings 2048\)"):
        plan_run(load_recipe("e1_math_1p5b", {"model": str(short)}), "h100")
    with pytest.raises(PlanError, match="huggingface-cli download not-cached/model-xyz config.json"):
        plan_run(load_recipe("e1_math_1p5b", {"model": "not-cached/model-xyz"}), "h100")
    with pytest.raises(ConfigError, match="max_prompt_tokens must be a positive integer"):
        load_recipe("e1_math_1p5b", {"max_prompt_tokens": 0})


def test_engines_from_the_shipped_accelerate_configs():
    acc = ROOT / "trainers" / "recipes" / "accelerate"
    assert read_engine(str(acc / "deepspeed_zero3.yaml"), 8) == Engine(
        "zero", zero_stage=3, source=str(acc / "deepspeed_zero3.yaml"))
    assert read_engine(str(acc / "fsdp.yaml"), 8).kind == "fsdp"
    assert read_engine(None, 1).kind == "single" and read_engine(None, 2).kind == "ddp"
    assert json.loads(json.dumps(SHAPES))  # the shapes are plain config.json data


def test_a_run_that_does_not_fit_is_refused_before_loading(tmp_path):
    model = write_shape(tmp_path, "r1-distill-qwen-1.5b")  # config.json only: loading weights would fail loudly
    out = subprocess.run([sys.executable, "-m", "er_cli", "train", "--config", "tiny_cpu", "--model", str(model),
                          "--output-dir", str(tmp_path / "run"), "--gpu", "custom:4"], cwd=ROOT, capture_output=True,
                         text=True)
    assert out.returncode != 0 and "DOES NOT FIT" in out.stdout, out.stdout + out.stderr
    assert "does not fit the card; nothing was loaded" in out.stderr
    assert not (tmp_path / "run").exists()


def test_unset_vllm_max_model_length_means_the_models_context(tmp_path):
    model = write_shape(tmp_path, "r1-distill-qwen-14b")
    cfg = load_recipe("e1_code_14b", {"model": str(model), "grpo": {"vllm_max_model_length": None}})
    plan, _ = plan_run(cfg, "h100-80gb")
    assert not plan.fits and "max_model_len sequence of 131,072" in plan.problems[0]
    assert "set it to 4097" in plan.problems[0]


def test_fixes_for_activations_and_optimizer_states():
    from trainers.plan import PlanSettings, suggest_fixes

    shape, gpu = _shape("r1-distill-qwen-7b"), parse_gpu("a100-80gb")
    s = PlanSettings(num_processes=8, micro_batch=8, grad_accum=8, steps_per_generation=16,
                     gradient_checkpointing=False, backend="hf")
    zero2 = Engine("zero", zero_stage=2)
    assert not compute_plan(shape, s, zero2, gpu).fits
    fixes = suggest_fixes(shape, s, zero2, gpu)
    assert any(f.startswith("grpo.gradient_checkpointing: true") for f in fixes), fixes
    micro = next(f for f in fixes if f.startswith("grpo.per_device_train_batch_size"))
    size = int(micro.split(": ")[1].split(",")[0])
    scale = 8 // size
    assert compute_plan(shape, dataclasses.replace(s, micro_batch=size, grad_accum=8 * scale,
                                                   steps_per_generation=16 * scale), zero2, gpu).fits
    assert "gradient_accumulation_steps: " + str(8 * scale) in micro  # the batches stay the same


def test_anytime_rollouts_hold_a_pass_shared_prefix_once_in_the_kv_cache(tmp_path):
    """An anytime pass (K cuts x n solutions) keeps its prompt and thinking once in vLLM's prefix cache: the plan
    fits whole passes, ``prompt + t + K n (1 + s)`` tokens each, where independent rollouts of the same completions
    need ``K n (prompt + t + 1 + s)``. Memory peaks do not change (training sees the same completions)."""
    model = write_shape(tmp_path, RECIPE_SHAPES["e1_math_1p5b"])
    cfg = load_recipe("e1_math_1p5b", {"model": str(model), "think_budget_tokens": [256, 512, 768, 1024],
                                       "anytime_cuts": 4, "anytime_solutions": 2, "group_size": 16,
                                       "grpo": {"vllm_gpu_memory_utilization": 0.1}})
    anytime, text = plan_run(cfg, "a100-80gb")
    s = anytime.settings
    assert (s.anytime_cuts, s.anytime_solutions, s.completions_per_pass) == (4, 2, 8)
    assert s.pass_tokens == s.prompt_tokens + s.think_tokens + 8 * (1 + s.solution_tokens)
    independent = compute_plan(anytime.shape, dataclasses.replace(s, anytime_cuts=0, anytime_solutions=1),
                               anytime.engine, anytime.gpu)
    v, v0 = anytime.vllm, independent.vllm
    assert v is not None and v0 is not None and v.kv_cache == v0.kv_cache > 0
    max_seqs = s.micro_batch * s.steps_per_generation
    assert v0.sequences_at_once == min(max_seqs, v0.kv_tokens // s.sequence_tokens)  # unchanged without anytime
    passes = min(max_seqs // 8, v.kv_tokens // s.pass_tokens)
    assert v.sequences_at_once == 8 * passes and v.waves == -(-(v.sequences // 8) // passes)
    assert v0.waves == -(-v0.sequences // v0.sequences_at_once)
    assert v.waves < v0.waves  # the KV cache binds here: whole passes fit where independent rollouts take waves
    assert (anytime.generation_peak, anytime.training_peak) == (independent.generation_peak,
                                                                 independent.training_peak)
    assert anytime.step_seconds is not None and independent.step_seconds is not None
    assert anytime.step_seconds < independent.step_seconds
    n = s.generation_batch
    assert f"{passes} of {v.sequences // 8} anytime thinking passes at once" in text
    assert f"({n // 8} anytime passes)" in text
