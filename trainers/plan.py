"""``er train --plan``: per-GPU memory of a GRPO run with its rollout engine, checked before anything loads.

Pure arithmetic over the model's ``config.json``, the recipe and its accelerate config
(:mod:`trainers.plan_inputs`); no torch import. Per GPU it adds up:

- the trainer's model states as the engine shards them, counted as DeepSpeed's
  ``estimate_zero{2,3}_model_states_mem_needs`` count them (tested against them): ZeRO-3
  ``18 B/param / GPUs + 4 B x the largest layer``; ZeRO-1/2 ``2 B/param + 18 B/param / GPUs``;
  FSDP (accelerate upcasts to fp32 under mixed precision) ``16 B/param / GPUs`` plus the
  gathered bf16 units; one process or DDP: parameters, gradients and AdamW's two moments in
  the training dtype (plus DDP's gradient buckets);
- activations of one micro-batch of ``prompt + t + 1 + s`` tokens, with and without gradient
  checkpointing (the tensors HF's eager Qwen2/Llama layers save for backward, SDPA attention);
- the vocabulary peak of TRL's fused LM head (``add_fused_lm_head``: the full fp32 gradient of
  the head, the hidden-state gradient and the logit tiles; full logits are never built);
- the reference model when ``beta > 0``;
- vLLM colocated (its ``vllm_gpu_memory_utilization`` share: weights / TP, the profiling
  peak, the KV cache and how many sequences of the generation batch it holds at once; sleep
  mode frees it during training) or a vLLM server on other GPUs;
- a fixed allowance for the CUDA context, cuBLAS and NCCL.

The peak is the larger of the generation phase (trainer states + vLLM) and the training
phase (states + activations + vocabulary peak, + vLLM unless asleep). Not included:
allocator fragmentation, CUDA-graph pools, NCCL buffers beyond the allowance (see
docs/guides/planning.md). A plan that does not fit lists settings that would, each one
checked by recomputing the plan.

Example:
    >>> from trainers.plan_inputs import ModelShape
    >>> shape = ModelShape("qwen2", 1536, 28, 12, 2, 128, 8960, 151936, False, 131072, qkv_bias=True)
    >>> shape.parameters
    1777088000

"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from trainers.plan_inputs import DTYPE_BYTES, GPU, Engine, ModelShape, PlanError

__all__ = ["JUDGE_RATES", "Plan", "PlanSettings", "compute_plan", "format_resource_plan", "hf_generation_bytes",
           "model_state_bytes", "plan_run", "settings_from_config", "suggest_fixes"]

GiB = 2**30
#: CUDA context, cuBLAS workspaces and NCCL communicators per process (an allowance, not measured here)
RUNTIME_ALLOWANCE = int(2.0 * GiB)
#: what a colocated vLLM keeps while asleep (level 2): buffers outside weights and KV cache (an allowance)
VLLM_SLEEP_RESIDUE = int(0.5 * GiB)
#: vLLM's memory besides weights, activations and KV cache (its allocator, sampler state; an allowance)
VLLM_OVERHEAD = int(0.5 * GiB)
#: TRL's colocated engine profiles with this many batched tokens (trl/generation/vllm_generation.py)
VLLM_BATCHED_TOKENS = 4096
#: TRL's fused LM head: logit tiles of (4096 tokens x 32768 vocabulary rows) (trl/kernels/chunked_logprob.py)
LOGIT_TILE = 4096 * 32768
#: grader throughput per worker, from benchmarks/RESULTS.md: "Reward service" (one 20-test stdio submission,
#: Docker isolation, one client: 11.8 submissions/s on one busy worker) and "Reward service" math checks
#: (498 checks/s on 2 checker workers in-process)
JUDGE_RATES = {"code": 11.8, "math": 249.0}
#: share of the card a plan may use: the rest is left for allocator fragmentation, which it does not model
USABLE_SHARE = 0.95
#: the step-time estimate's efficiencies (decode reaches this share of HBM bandwidth; training this MFU)
DECODE_BANDWIDTH_EFFICIENCY = 0.6
TRAIN_MFU = 0.35


@dataclass(frozen=True)
class PlanSettings:
    """The recipe's settings a plan depends on (TRL's defaults where the recipe is silent)."""

    num_processes: int = 1
    num_machines: int = 1
    micro_batch: int = 8
    grad_accum: int = 1
    steps_per_generation: int = 1
    gradient_checkpointing: bool = True
    beta: float = 0.0
    bf16: bool = True
    train_dtype_bytes: int = 2
    backend: str = "vllm"
    vllm_mode: str = "colocate"
    utilization: float = 0.3
    tensor_parallel: int = 1
    sleep_mode: bool = False
    max_model_length: int | None = None
    prompt_tokens: int = 1024
    think_tokens: int = 1024
    solution_tokens: int = 1024
    group_size: int = 8
    task: str = "math"
    use_cpu: bool = False
    server_tensor_parallel: int = 1
    server_utilization: float = 0.9
    anytime_cuts: int = 0
    anytime_solutions: int = 1

    @property
    def sequence_tokens(self) -> int:
        """Tokens of one sequence: prompt + t + 1 (a forced ``</think>``) + s."""
        return self.prompt_tokens + self.think_tokens + 1 + self.solution_tokens

    @property
    def completions_per_pass(self) -> int:
        """Completions one thinking pass yields: ``K x n`` with anytime rollouts, else 1."""
        return self.anytime_cuts * self.anytime_solutions if self.anytime_cuts else 1

    @property
    def pass_tokens(self) -> int:
        """KV-cache tokens of one thinking pass with its completions.

        Without anytime rollouts: :attr:`sequence_tokens`. With them the prompt and the thinking
        are held once (vLLM's prefix cache shares them between the pass's ``K x n`` solution
        requests) and each completion adds ``1 + s`` tokens: ``prompt + t + K x n x (1 + s)``.
        """
        return self.prompt_tokens + self.think_tokens + self.completions_per_pass * (1 + self.solution_tokens)

    @property
    def generation_batch(self) -> int:
        """Completions per generation batch, all processes."""
        return self.micro_batch * self.num_processes * self.steps_per_generation


def _grpo_flag(grpo: dict[str, Any], name: str, default: bool) -> bool:
    alias = {"gradient_checkpointing": "activation_checkpointing"}.get(name)
    if alias and alias in grpo:
        return bool(grpo[alias])
    return bool(grpo.get(name, default))


#: the prompt length planned for when the recipe sets no ``max_prompt_tokens``
DEFAULT_PROMPT_TOKENS = 1024


def _prompt_tokens(cfg: Any, shape: ModelShape) -> int:
    """The recipe's ``max_prompt_tokens``; unset: 1024, or what the context leaves after the budgets if less."""
    if cfg.max_prompt_tokens is not None:
        return int(cfg.max_prompt_tokens)
    room = shape.max_position_embeddings - cfg.think_budget_max - 1 - cfg.solution_budget_tokens
    return DEFAULT_PROMPT_TOKENS if room < 1 else min(DEFAULT_PROMPT_TOKENS, room)


def settings_from_config(cfg: Any, shape: ModelShape, task: str) -> PlanSettings:
    """Read :class:`PlanSettings` from an :class:`~trainers.config.ERTrainConfig` (TRL defaults otherwise)."""
    g = dict(cfg.grpo)
    dtype = str((g.get("model_init_kwargs") or {}).get("dtype", "auto")).removeprefix("torch.")
    train_bytes = shape.dtype_bytes if dtype == "auto" else DTYPE_BYTES.get(dtype, 4)
    accum = int(g.get("gradient_accumulation_steps", 1))
    return PlanSettings(
        num_processes=cfg.num_processes, num_machines=cfg.num_machines,
        micro_batch=int(g.get("per_device_train_batch_size", 8)), grad_accum=accum,
        steps_per_generation=int(g.get("steps_per_generation") or accum),
        gradient_checkpointing=_grpo_flag(g, "gradient_checkpointing", True), beta=float(g.get("beta", 0.0)),
        bf16=bool(g.get("bf16", not g.get("fp16", False))), train_dtype_bytes=train_bytes, backend=cfg.backend,
        vllm_mode=cfg.vllm_mode, utilization=float(g.get("vllm_gpu_memory_utilization", 0.3)),
        tensor_parallel=int(g.get("vllm_tensor_parallel_size", 1)),
        sleep_mode=bool(g.get("vllm_enable_sleep_mode", False)), max_model_length=g.get("vllm_max_model_length"),
        prompt_tokens=_prompt_tokens(cfg, shape), think_tokens=cfg.think_budget_max,
        solution_tokens=cfg.solution_budget_tokens, group_size=cfg.group_size, task=task,
        use_cpu=bool(g.get("use_cpu", False)), anytime_cuts=int(cfg.anytime_cuts),
        anytime_solutions=int(cfg.anytime_solutions))


def model_state_bytes(shape: ModelShape, engine: Engine, gpus: int, train_dtype_bytes: int = 2) -> int:
    """Parameters, gradients and optimizer states per GPU, as the engine keeps them.

    DeepSpeed: the counts of its own estimators (``estimate_zero3_model_states_mem_needs``,
    ``estimate_zero2_model_states_mem_needs``), offload included. FSDP: fp32 sharded
    parameters, gradients and Adam moments (16 B/param) plus the gathered bf16 units. One
    process / DDP: parameters, gradients and AdamW moments in the training dtype (4 x dtype
    bytes per parameter), plus DDP's gradient buckets (one more copy of the gradients).
    """
    n, largest = shape.parameters, shape.largest_layer_parameters
    if engine.kind == "zero" and engine.zero_stage == 3:
        if engine.offload_optimizer and engine.offload_params:
            return 4 * largest
        per_param = 2 if engine.offload_optimizer else 18
        return 4 * largest + int(per_param * n / gpus)
    if engine.kind == "zero":
        return 2 * n if engine.offload_optimizer else 2 * n + int(18 * n / gpus)
    if engine.kind == "fsdp":
        head = 0 if shape.tie_word_embeddings else shape.embedding_parameters
        root = shape.embedding_parameters + head + shape.hidden_size
        gathered = 4 * (root + 2 * shape.layer_parameters) if engine.reshard_after_forward else 4 * n
        return gathered + (0 if engine.offload_params else int(16 * n / gpus))
    w = train_dtype_bytes
    return 4 * w * n + (w * n if engine.kind == "ddp" else 0)


def _layer_activation_bytes(shape: ModelShape, act: int) -> int:
    """Bytes one decoder layer saves for backward per token (HF eager layers, SDPA attention).

    Two RMSNorms (an fp32 copy of the input and the normalised value), the inputs of the
    q/k/v and gate/up projections, q, k, v and the attention output (saved by SDPA, and its
    contiguous copy for o_proj), the log-sum-exp, and the MLP's gate, SiLU, up and product.
    """
    h, i = shape.hidden_size, shape.intermediate_size
    norms = 2 * (4 * h + act * h)
    proj_inputs = 2 * act * h
    attention = act * (shape.q_dim + 2 * shape.kv_dim) + 2 * act * shape.q_dim + 4 * shape.num_heads
    return norms + proj_inputs + attention + 4 * act * i


def activation_bytes(shape: ModelShape, tokens: int, act: int, checkpointing: bool) -> int:
    """Activations kept for backward over ``tokens`` (one micro-batch), per GPU."""
    layer = _layer_activation_bytes(shape, act)
    final = (4 + act) * shape.hidden_size * tokens  # final norm
    if checkpointing:  # each layer keeps its input; backward recomputes one layer at a time
        return shape.num_layers * act * shape.hidden_size * tokens + layer * tokens + final
    return shape.num_layers * layer * tokens + final


def vocab_peak_bytes(shape: ModelShape, scored_tokens: int, act: int, weight_bytes: int) -> int:
    """TRL's fused LM head in backward: fp32 head gradient (+ its cast), fp32 hidden gradient, two logit tiles."""
    head = shape.embedding_parameters * (4 + weight_bytes)
    hidden = scored_tokens * shape.hidden_size * (4 + act)
    tiles = 2 * min(LOGIT_TILE, scored_tokens * 32768) * act
    return head + hidden + tiles + 7 * 4 * scored_tokens


def hf_generation_bytes(shape: ModelShape, batch: int, tokens: int, dtype_bytes: int = 2) -> int:
    """An HF ``generate`` of ``batch`` sequences of ``tokens`` (prompt + new): weights, full KV cache, fp32 logits."""
    weights = shape.parameters * dtype_bytes
    kv = batch * tokens * shape.kv_bytes_per_token(1, dtype_bytes)
    return weights + kv + 2 * batch * shape.vocab_size * 4


def reference_bytes(shape: ModelShape, engine: Engine, gpus: int, weight_bytes: int) -> int:
    """The frozen reference model (``beta > 0``): sharded like the policy under ZeRO-3/FSDP, else whole."""
    n = shape.parameters
    if engine.kind == "zero" and engine.zero_stage == 3:
        return int(2 * n / gpus) + 2 * shape.largest_layer_parameters
    if engine.kind == "fsdp":
        return int(weight_bytes * n / gpus) + 2 * shape.embedding_parameters
    return (2 if engine.kind == "zero" else weight_bytes) * n


@dataclass
class VLLMPlan:
    """The rollout engine's side of the plan (one engine: per GPU in colocate, per server GPU otherwise)."""

    mode: str
    budget: int
    weights: int
    activations: int
    kv_cache: int
    kv_per_token: int
    tensor_parallel: int
    sequences_at_once: int
    sequences: int
    waves: int
    sleep_mode: bool = False
    gpus: int = 0

    @property
    def kv_tokens(self) -> int:
        """KV-cache capacity in tokens."""
        return max(0, self.kv_cache) // self.kv_per_token


@dataclass
class Plan:
    """A resource plan (per GPU) and whether it fits the card."""

    shape: ModelShape
    settings: PlanSettings
    engine: Engine
    gpu: GPU
    trainer: list[tuple[str, int]]
    activations_other: int
    vllm: VLLMPlan | None
    generation_peak: int
    training_peak: int
    problems: list[str] = field(default_factory=list)
    step_seconds: float | None = None
    reward_workers: int | None = None
    reward_share: float = 0.1

    @property
    def peak(self) -> int:
        """The larger of the two phases."""
        return max(self.generation_peak, self.training_peak)

    @property
    def fits(self) -> bool:
        """The peak fits the card and the engine can start."""
        return not self.problems and self.peak <= self.usable

    @property
    def usable(self) -> int:
        """The card's memory less the fragmentation margin (:data:`USABLE_SHARE`)."""
        return int(USABLE_SHARE * self.gpu.memory_bytes)


def check_lengths(shape: ModelShape, s: PlanSettings) -> None:
    """Refuse budgets that cannot fit the engine's or the model's context.

    Raises:
        PlanError: ``prompt + t + 1 + s`` above ``grpo.vllm_max_model_length`` or ``max_position_embeddings``;
            a tensor-parallel size that does not divide the GPUs or the heads, or that colocate mode refuses.

    """
    need = s.sequence_tokens
    parts = (f"max_prompt_tokens ({s.prompt_tokens}) + think_budget_tokens ({s.think_tokens}) + </think> (1) + "
             f"solution_budget_tokens ({s.solution_tokens}) = {need} tokens")
    if s.backend == "vllm" and s.max_model_length is not None and need > s.max_model_length:
        raise PlanError(f"{parts} > grpo.vllm_max_model_length ({s.max_model_length}): raise "
                        f"grpo.vllm_max_model_length to at least {need}, or lower the budgets or max_prompt_tokens.")
    if need > shape.max_position_embeddings:
        raise PlanError(f"{parts} > the model's context (max_position_embeddings {shape.max_position_embeddings}): "
                        "lower the budgets or max_prompt_tokens.")
    tp = s.tensor_parallel if s.vllm_mode == "colocate" else s.server_tensor_parallel
    if s.backend == "vllm" and (tp < 1 or shape.num_heads % tp):
        raise PlanError(f"vLLM tensor-parallel size {tp} does not divide the model's {shape.num_heads} attention "
                        "heads; use a divisor of it.")
    if s.backend == "vllm" and s.vllm_mode == "colocate" and tp > 1:
        if s.num_processes % tp:
            raise PlanError(f"grpo.vllm_tensor_parallel_size={tp} does not divide num_processes={s.num_processes}; "
                            "colocated TP groups are made of training processes: use a divisor of num_processes.")
        raise PlanError(f"grpo.vllm_tensor_parallel_size={tp} in colocate mode is refused by Elastic Reasoning "
                        "rollouts (trainers/vllm_rollout.py): use vllm_mode: server for tensor parallelism, or "
                        "vllm_tensor_parallel_size: 1 with grpo.vllm_enable_sleep_mode: true and a larger "
                        "grpo.vllm_gpu_memory_utilization.")


def _vllm(shape: ModelShape, s: PlanSettings, gpu: GPU, colocate: bool) -> VLLMPlan:
    tp = s.tensor_parallel if colocate else s.server_tensor_parallel
    util = s.utilization if colocate else s.server_utilization
    budget = int(util * gpu.memory_bytes)
    weights = shape.parameters * shape.dtype_bytes // tp  # TRL builds vLLM with dtype="auto": the checkpoint's dtype
    h, i = shape.hidden_size, shape.intermediate_size
    per_token = 2 * (4 * h + (2 * shape.q_dim + 2 * shape.kv_dim + 3 * i) // tp)
    seqs = s.micro_batch * s.steps_per_generation * tp if colocate else s.generation_batch
    max_seqs = s.micro_batch * tp * s.steps_per_generation if colocate else 256
    sampler = min(max_seqs, seqs) * shape.vocab_size * 4 * 2
    acts = VLLM_BATCHED_TOKENS * per_token + sampler + VLLM_OVERHEAD
    kv = budget - weights - acts
    kvpt = shape.kv_bytes_per_token(tp, 2)
    per = s.completions_per_pass  # whole passes run together: their K x n solution requests share one prefix
    passes_at_once = min(max(1, max_seqs // per), max(0, kv) // (kvpt * s.pass_tokens))
    at_once = passes_at_once * per
    waves = math.ceil(math.ceil(seqs / per) / passes_at_once) if passes_at_once else 0
    return VLLMPlan("colocate" if colocate else "server", budget, weights, acts, kv, kvpt, tp, at_once, seqs, waves,
                    s.sleep_mode and colocate, 0 if colocate else tp)


def compute_plan(shape: ModelShape, s: PlanSettings, engine: Engine, gpu: GPU, reward_share: float = 0.1) -> Plan:
    """The per-GPU plan of one run (see the module docstring).

    Raises:
        PlanError: see :func:`check_lengths`.

    """
    check_lengths(shape, s)
    gpus = s.num_processes
    w = s.train_dtype_bytes
    zero3 = engine.kind == "zero" and engine.zero_stage == 3
    act = 2 if (s.bf16 or w == 2) else 4
    tokens = s.micro_batch * s.sequence_tokens
    scored = tokens if s.use_cpu else s.micro_batch * (s.think_tokens + 1 + s.solution_tokens)
    weight_bytes = 2 if engine.kind in ("zero", "fsdp") else w
    trainer = [("model states (params, grads, optimizer)", model_state_bytes(shape, engine, gpus, w))]
    if s.beta > 0:
        trainer.append(("reference model (beta > 0)", reference_bytes(shape, engine, gpus, w)))
    if zero3:  # DeepSpeed's "auto" buckets from accelerate/transformers: prefetch 0.9 h^2, reduce h^2 (bf16)
        trainer.append(("ZeRO-3 prefetch + reduce buckets", int(2 * 1.9 * shape.hidden_size ** 2)))
    if not s.use_cpu:
        trainer.append(("CUDA context, cuBLAS, NCCL (allowance)", RUNTIME_ALLOWANCE))
    on = activation_bytes(shape, tokens, act, s.gradient_checkpointing)
    other = activation_bytes(shape, tokens, act, not s.gradient_checkpointing)
    trainer.append((f"activations: micro-batch {s.micro_batch} x {s.sequence_tokens} tokens, gradient "
                    f"checkpointing {'on' if s.gradient_checkpointing else 'off'}", on))
    trainer.append(("vocabulary peak (TRL's fused LM head: fp32 head grad, hidden grad, logit tiles)",
                    vocab_peak_bytes(shape, scored, act, weight_bytes)))
    persistent = sum(b for name, b in trainer if not name.startswith(("activations", "vocabulary")))
    training = sum(b for _, b in trainer)
    vllm = None
    problems: list[str] = []
    generation = persistent
    if s.backend == "vllm":
        vllm = _vllm(shape, s, gpu, colocate=s.vllm_mode == "colocate")
        # vLLM refuses to start unless its KV cache holds one sequence of max_model_len (TRL: the model's context
        # when grpo.vllm_max_model_length is unset)
        max_len = s.max_model_length or shape.max_position_embeddings
        if vllm.kv_tokens < max_len:
            where = "grpo.vllm_gpu_memory_utilization" if s.vllm_mode == "colocate" else "the server's share"
            unset = "" if s.max_model_length else (f" (grpo.vllm_max_model_length is unset, so it is the model's "
                                                   f"context; set it to {s.sequence_tokens} or a little more)")
            problems.append(f"vLLM's KV cache ({_gib(vllm.kv_cache)}) holds {vllm.kv_tokens:,} tokens, less than one "
                            f"max_model_len sequence of {max_len:,}{unset}: vLLM would refuse to start; raise {where} "
                            "(or use vllm_mode: server with tensor parallelism)")
        if s.vllm_mode == "colocate":
            generation += vllm.budget
            training += VLLM_SLEEP_RESIDUE if s.sleep_mode else vllm.budget
    plan = Plan(shape, s, engine, gpu, trainer, other, vllm, generation, training, problems,
                reward_share=reward_share)
    _reward_sizing(plan)
    return plan


def _reward_sizing(plan: Plan) -> None:
    """Estimate one generation batch's cycle time and the grader workers that keep rewards under the share."""
    s, gpu, shape, v = plan.settings, plan.gpu, plan.shape, plan.vllm
    if gpu.bandwidth_bytes_s is None or gpu.bf16_flops is None or v is None or not v.waves:
        return
    per = s.completions_per_pass
    mean_kv = (v.sequences_at_once // per) * (s.prompt_tokens + (s.think_tokens + per * s.solution_tokens) // 2) \
        * v.kv_per_token
    decode_step = (v.weights + mean_kv) / (gpu.bandwidth_bytes_s * DECODE_BANDWIDTH_EFFICIENCY)
    generation = v.waves * (s.think_tokens + 1 + s.solution_tokens) * decode_step
    tokens = s.micro_batch * s.steps_per_generation * s.sequence_tokens  # per GPU per generation batch
    passes = 6 + (2 if s.gradient_checkpointing else 0) + (2 if s.beta > 0 else 0) + \
        (2 if s.steps_per_generation > s.grad_accum else 0)
    train = passes * shape.parameters * tokens / (gpu.bf16_flops * TRAIN_MFU)
    plan.step_seconds = generation + train
    rate = JUDGE_RATES.get(s.task, JUDGE_RATES["code"])
    plan.reward_workers = math.ceil(s.generation_batch / (rate * plan.reward_share * plan.step_seconds))


def _gib(n: float) -> str:
    return f"{n / GiB:.1f} GiB"


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n:,}"


def _at_once(v: VLLMPlan, s: PlanSettings) -> str:
    """What the KV cache holds at once: sequences, or whole anytime passes."""
    per = s.completions_per_pass
    if per == 1:
        return f"{v.sequences_at_once} of {v.sequences} {s.sequence_tokens}-token sequences at once"
    return (f"{v.sequences_at_once // per} of {v.sequences // per} anytime thinking passes at once ({per} completions "
            f"each, {s.pass_tokens} tokens with the shared prefix held once)")


def format_resource_plan(plan: Plan, source: str = "", fixes: list[str] | None = None) -> str:
    """The plan as text (what ``er train --plan`` prints)."""
    s, shape, gpu, v = plan.settings, plan.shape, plan.gpu, plan.vllm
    device = "CPU process" if s.use_cpu else f"GPU ({s.num_processes} x {gpu.name}, {_gib(gpu.memory_bytes)} each)"
    out = [f"Resource plan per {device}",
           f"  model:     {shape.model_type}, {shape.parameters / 1e9:.3f} B parameters, {shape.num_layers} layers, "
           f"hidden {shape.hidden_size}, vocab {shape.vocab_size}{f' ({source})' if source else ''}",
           f"  engine:    {plan.engine.describe()}; training dtype {s.train_dtype_bytes} B"
           f"{' with bf16 autocast' if s.bf16 and s.train_dtype_bytes == 4 else ''}",
           "  trainer:"]
    out += [f"    {_gib(b):>10}  {name}" for name, b in plan.trainer]
    out.append(f"    {'':>10}  (gradient checkpointing {'off' if s.gradient_checkpointing else 'on'} would need "
               f"{_gib(plan.activations_other)} of activations)")
    if v is not None and v.mode == "colocate":
        out.append(f"  vLLM colocate: {s.utilization:.2f} x {_gib(gpu.memory_bytes)} = {_gib(v.budget)} per GPU"
                   f"{', sleep mode (freed while training)' if v.sleep_mode else ', held while training'}")
    elif v is not None:
        out.append(f"  vLLM server on {v.gpus} other GPU(s) (TP {v.tensor_parallel}, utilisation "
                   f"{s.server_utilization:.2f}): {_gib(v.budget)} per server GPU")
    if v is not None:
        out += [f"    {_gib(v.weights):>10}  weights ({shape.dtype_bytes} B x {shape.parameters / 1e9:.2f} B / TP "
                f"{v.tensor_parallel})",
                f"    {_gib(v.activations):>10}  profiling peak ({VLLM_BATCHED_TOKENS} batched tokens, sampler) + "
                "overhead",
                f"    {_gib(v.kv_cache):>10}  KV cache: {v.kv_tokens:,} tokens at {v.kv_per_token // 1024} KiB/token "
                f"-> {_at_once(v, s)} ({v.waves} wave{'s' if v.waves != 1 else ''})"]
    verdict = "FITS" if plan.fits else "DOES NOT FIT"
    cap = "host memory" if s.use_cpu else "the card"
    out.append(f"  peak:      generation {_gib(plan.generation_peak)}, training {_gib(plan.training_peak)} -> "
               f"{_gib(plan.peak)} of {_gib(plan.usable)} usable ({USABLE_SHARE:.0%} of {cap}): {verdict}"
               + (f", {_gib(plan.usable - plan.peak)} spare" if plan.fits else ""))
    out += [f"  problem:   {p}" for p in plan.problems]
    n = s.generation_batch
    out.append(f"  rollouts:  {n} completions per generation batch ({n // s.group_size} prompts x {s.group_size}): "
               f"prompt <= {_millions(n * s.prompt_tokens)}, "
               f"thinking <= {_millions(n // s.completions_per_pass * s.think_tokens)}"
               f"{f' ({n // s.completions_per_pass} anytime passes)' if s.completions_per_pass > 1 else ''}, "
               f"solution <= {_millions(n * s.solution_tokens)} tokens; {n} "
               f"{'code submissions' if s.task == 'code' else 'math checks'}")
    if plan.step_seconds is not None and plan.reward_workers is not None:
        rate = JUDGE_RATES.get(s.task, JUDGE_RATES["code"])
        out.append(f"  rewards:   generation batch ~{plan.step_seconds:.0f} s (estimate: decode at "
                   f"{DECODE_BANDWIDTH_EFFICIENCY:.0%} of HBM bandwidth, training at {TRAIN_MFU:.0%} MFU); "
                   f"{plan.reward_workers} {'judge' if s.task == 'code' else 'math-checker'} "
                   f"worker{'s' if plan.reward_workers != 1 else ''} at "
                   f"{rate:g}/s each (benchmarks/RESULTS.md) keep grading under {plan.reward_share:.0%} of it")
    if fixes:
        out.append("  settings that fit (each recomputed):")
        out += [f"    - {f}" for f in fixes]
    return "\n".join(out)


def suggest_fixes(shape: ModelShape, s: PlanSettings, engine: Engine, gpu: GPU) -> list[str]:
    """Settings that make a failing plan fit, each checked by recomputing the plan."""
    out: list[str] = []

    def fits(**changes: Any) -> Plan | None:
        try:
            p = compute_plan(shape, dataclasses.replace(s, **changes), engine, gpu)
        except PlanError:
            return None
        return p if p.fits else None

    colocate = s.backend == "vllm" and s.vllm_mode == "colocate"
    if colocate:
        for sleep in sorted({s.sleep_mode, True}):
            ok = [u for u in [round(0.05 * k, 2) for k in range(2, 19)] if fits(utilization=u, sleep_mode=sleep)]
            if ok:
                p = fits(utilization=ok[-1], sleep_mode=sleep)
                assert p is not None and p.vllm is not None
                out.append(f"grpo.vllm_gpu_memory_utilization: {ok[-1]} (fits from {ok[0]})"
                           + (", grpo.vllm_enable_sleep_mode: true" if sleep and not s.sleep_mode else "")
                           + f" -> peak {_gib(p.peak)}, {p.vllm.sequences_at_once} sequences at once")
    if not s.gradient_checkpointing and (p := fits(gradient_checkpointing=True)):
        out.append(f"grpo.gradient_checkpointing: true -> peak {_gib(p.peak)}")
    micro = s.micro_batch
    while micro > 1:
        micro //= 2
        scale = s.micro_batch // micro
        if (p := fits(micro_batch=micro, grad_accum=s.grad_accum * scale,
                      steps_per_generation=s.steps_per_generation * scale)):
            out.append(f"grpo.per_device_train_batch_size: {micro}, gradient_accumulation_steps: "
                       f"{s.grad_accum * scale}, steps_per_generation: {s.steps_per_generation * scale} (same batch)"
                       f" -> peak {_gib(p.peak)}")
            break
    if engine.kind == "zero" and not engine.offload_optimizer:
        off = dataclasses.replace(engine, offload_optimizer=True)
        try:
            p = compute_plan(shape, s, off, gpu)
        except PlanError:
            p = None
        if p is not None and p.fits:
            out.append(f"offload_optimizer_device: cpu in the accelerate config -> peak {_gib(p.peak)} (CPU RAM "
                       f"~{_gib(16 * shape.parameters / max(1, s.num_machines))} per node)")
    if s.backend == "vllm":
        for tp in (1, 2, 4, 8):
            if shape.num_heads % tp:
                continue
            p = None
            try:
                p = compute_plan(shape, dataclasses.replace(s, vllm_mode="server", server_tensor_parallel=tp), engine,
                                 gpu)
            except PlanError:
                pass
            if p is not None and p.fits:
                out.append(f"vllm_mode: server with trl vllm-serve --tensor-parallel-size {tp} on {tp} more GPU(s) "
                           f"-> trainer peak {_gib(p.peak)}")
                break
    return out


def _task(cfg: Any) -> str:
    from er_env.data.loaders import EMBEDDED, HUB_SETS

    if cfg.dataset in HUB_SETS:
        return HUB_SETS[cfg.dataset].task
    return EMBEDDED.get(cfg.dataset) or ("code" if cfg.reward_endpoint else "math")


def _detect_gpu() -> GPU | None:
    """This machine's card from ``nvidia-smi`` (None without one)."""
    import shutil
    import subprocess

    from trainers.plan_inputs import GPUS

    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    if not out:
        return None
    name, mib = (x.strip() for x in out[0].split(",", 1))
    memory = int(float(mib)) * 2**20
    known = next((g for g in GPUS.values() if g.name.split("-")[0] in name.lower()
                  and abs(g.memory_bytes - memory) < 4 * GiB), None)
    return known or GPU(f"{name} ({mib} MiB)", memory)


def plan_run(cfg: Any, gpu: str | None = None, reward_share: float = 0.1) -> tuple[Plan, str]:
    """The plan of a loaded recipe, and its text.

    Args:
        cfg: an :class:`~trainers.config.ERTrainConfig`.
        gpu: a ``--gpu`` value; ``None``: this machine's card (``nvidia-smi``), else ``a100-80gb``
            (the paper's), said so in the text. CPU recipes (``grpo.use_cpu``) plan against host memory.
        reward_share: the share of a generation batch's time grading may take.

    Raises:
        PlanError: the model's config.json cannot be found or read, or the settings cannot run
            (see :func:`check_lengths`).

    """
    import os

    from trainers.launch import resolve_model
    from trainers.plan_inputs import load_config_json, parse_gpu, read_engine

    model, _ = resolve_model(cfg, build=False)
    shape, path = load_config_json(model)
    s = settings_from_config(cfg, shape, _task(cfg))
    note = ""
    if s.use_cpu:
        card = GPU("host RAM", os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) if gpu is None else \
            parse_gpu(gpu)
    elif gpu is not None:
        card = parse_gpu(gpu)
    else:
        detected = _detect_gpu()
        card = detected or parse_gpu("a100-80gb")
        note = "" if detected else "  (no --gpu and no nvidia-smi here: planned for a100-80gb; pass --gpu)\n"
    engine = read_engine(cfg.accelerate_config, cfg.num_processes)
    if s.use_cpu and engine.kind in ("zero", "fsdp"):  # accelerate trains CPU (gloo) jobs as plain DDP
        engine = Engine("single" if cfg.num_processes == 1 else "ddp", source=engine.source)
    plan = compute_plan(shape, s, engine, card, reward_share)
    fixes = [] if plan.fits else suggest_fixes(shape, s, engine, card)
    return plan, note + format_resource_plan(plan, str(path), fixes)
