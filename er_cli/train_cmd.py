"""``er train``: GRPO with Elastic Reasoning rollouts, from a YAML recipe.

``er train --config trainers/recipes/tiny_cpu.yaml [--dry-run] [overrides]``. Every
:class:`trainers.config.ERTrainConfig` field is also a flag that overrides the recipe
(``--think-budget-tokens 512``); ``--grpo '{max_steps: 10}'`` merges into the
recipe's ``grpo`` mapping. ``--dry-run`` validates and prints the plan (and the
``accelerate launch`` command for multi-GPU recipes) without loading weights;
``--plan`` prints only the per-GPU memory plan (:mod:`trainers.plan`) and exits 0 when it
fits, 1 when it does not; ``--rehearse`` then runs one real CPU step of the recipe on the tiny model.
``--resume [latest|PATH]`` continues from a checkpoint (docs/guides/long-runs.md).

Exit status: 0 trained; 143 preempted by SIGTERM, checkpoint written (continue with
``--resume latest``); 75 the reward service stayed unreachable, checkpoint written;
1 any other error.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from typing import Any

from er_cli import add_dataclass_args


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    from trainers.config import ERTrainConfig

    parser = subparsers.add_parser(
        "train", help="Train with GRPO (TRL) on budget-constrained rollouts from a YAML recipe.",
        description="Load a recipe (trainers/recipes/*.yaml, or a shipped name such as tiny_cpu), apply flag "
        "overrides, and train with TRL's GRPOTrainer on Elastic Reasoning rollouts. --dry-run prints the plan only.",
    )
    parser.add_argument("--config", required=True, help="Recipe YAML path or shipped recipe name (tiny_cpu, ...).")
    parser.add_argument("--dry-run", action="store_true", help="Validate and print the plan; load no weights.")
    parser.add_argument("--plan", action="store_true",
                        help="Print the per-GPU memory plan (trainer, vLLM, rollout volume, reward workers) and exit: "
                        "0 when it fits, 1 when it does not (with settings that would). No weights, no torch.")
    parser.add_argument("--gpu", default=None,
                        help="Card to plan for: a100-40gb, a100-80gb, h100-80gb, h200-141gb, l40s-48gb or "
                        "custom:<GiB> (default: this machine's card via nvidia-smi, else a100-80gb).")
    parser.add_argument("--reward-share", type=float, default=0.1,
                        help="Share of a generation batch's time grading may take, for the reward-worker count.")
    parser.add_argument("--rehearse", action="store_true",
                        help="Resolve the recipe's model, dataset and reward endpoint, then run ONE real step of the "
                        "recipe on CPU with the tiny model and 4 embedded problems (a laptop check of a cluster run).")
    parser.add_argument("--resume", nargs="?", const="latest", default=None, metavar="latest|PATH",
                        help="Continue from a checkpoint: 'latest' (the newest complete one in output_dir; the "
                        "default when the flag has no value) or a checkpoint-<step> folder. The recipe must be the "
                        "checkpoint's (max_steps, saving and logging may change).")
    add_dataclass_args(parser, ERTrainConfig)
    # only flags given on the command line override the recipe
    names = {f.name for f in dataclasses.fields(ERTrainConfig) if f.init}
    for action in parser._actions:
        if action.dest in names:
            action.default = argparse.SUPPRESS
        if action.dest == "think_budget_tokens":  # a number or a prior, as in a recipe
            action.type = _budget_value
            action.help = ("Thinking budget t in tokens (paper: 1024), or a prior drawn per GRPO group, written as "
                           "in a recipe: '256,512,1024', '{budgets: [256, 1024], weights: [3, 1]}', "
                           "'{uniform: [lo, hi]}' or '{log_uniform: [lo, hi]}'.")
    parser.set_defaults(func=_run)


def _budget_value(text: str) -> Any:
    """``--think-budget-tokens``: ``1024``, ``256,512,1024`` or a YAML prior such as ``{log_uniform: [16, 64]}``."""
    import yaml

    text = text.strip()
    if text and all(part.strip().isdigit() for part in text.split(",")):
        parts = [int(part) for part in text.split(",")]
        return parts[0] if len(parts) == 1 else parts
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a number, a comma list of budgets nor a YAML prior such as "
            "'{log_uniform: [16, 64]}'") from None


def _overrides(ns: argparse.Namespace) -> dict[str, Any]:
    import yaml

    from trainers.config import ConfigError, ERTrainConfig

    out = {f.name: getattr(ns, f.name) for f in dataclasses.fields(ERTrainConfig) if f.init and hasattr(ns, f.name)}
    if "grpo" in out:
        value = yaml.safe_load(out["grpo"]) if isinstance(out["grpo"], str) else out["grpo"]
        if not isinstance(value, dict):
            raise ConfigError(f"--grpo must be a YAML mapping such as '{{max_steps: 10}}', got {out['grpo']!r}.")
        out["grpo"] = value
    return out


def _override_argv(overrides: dict[str, Any]) -> list[str]:
    import json

    argv: list[str] = []
    for key, value in overrides.items():
        if isinstance(value, (list, tuple)):
            text = ",".join(str(v) for v in value)
        else:
            text = json.dumps(value) if isinstance(value, dict) else ("none" if value is None else str(value))
        argv += [f"--{key.replace('_', '-')}", text]
    return argv


def _launch(cfg: Any, plan: Any, resume: str | None = None) -> int:
    """Start this machine's part of a multi-process job and report how it ended."""
    import shlex
    import sys

    from trainers.launch import launch_node
    from trainers.resilience import read_stop

    cmd = plan.node_commands[cfg.machine_rank] if plan.node_commands else plan.accelerate_command
    if resume is not None:
        cmd = [*cmd, "--resume", resume]
    print(f"launching machine_rank {cfg.machine_rank}: {shlex.join(cmd)}", flush=True)
    started = time.time()
    rc = launch_node(cfg, cmd)
    stop = read_stop(cfg.output_dir, since=started)
    if rc != 0 and stop is not None:  # the ranks stopped on purpose, with a checkpoint
        print(stop["message"], file=sys.stderr, flush=True)
        return int(stop["exit_status"])
    if rc != 0:
        print(f"er train: the launch on machine_rank {cfg.machine_rank} failed (exit status {rc}): a training "
              "process failed, was killed, or lost a peer (collectives give up after rendezvous_timeout_s="
              f"{cfg.rendezvous_timeout_s} s); the failing rank's error is above.", file=sys.stderr, flush=True)
    return rc


def _resources(cfg: Any, ns: argparse.Namespace, required: bool) -> bool | None:
    """Print the resource plan; True/False: it fits or not; None: not computable here (only when not required)."""
    from trainers.config import ConfigError
    from trainers.plan import plan_run
    from trainers.plan_inputs import ConfigJSONMissing, PlanError

    try:
        plan, text = plan_run(cfg, ns.gpu, ns.reward_share)
    except ConfigJSONMissing as exc:  # a run downloads the model later; --plan needs it now
        if required:
            raise ConfigError(str(exc)) from None
        print(f"resource plan: not computed ({exc})", flush=True)
        return None
    except PlanError as exc:
        raise ConfigError(str(exc)) from None
    print(text, flush=True)
    return plan.fits


def _run(ns: argparse.Namespace) -> int:
    from trainers.config import ConfigError, load_recipe, resolve_recipe_path
    from trainers.launch import format_plan, in_distributed_launch, make_plan, train
    from trainers.resilience import TrainingStopped, record_stop

    overrides = _overrides(ns)
    cfg = load_recipe(ns.config, overrides)
    if ns.plan:
        return 0 if _resources(cfg, ns, required=True) else 1
    recipe = str(resolve_recipe_path(ns.config))
    plan = make_plan(cfg, recipe=recipe, extra_argv=_override_argv(overrides))
    if not in_distributed_launch():  # the launching process printed it once for all ranks
        print(format_plan(plan), flush=True)
        fits = _resources(cfg, ns, required=False)
    else:
        fits = None
    if ns.dry_run:
        print("dry run: nothing loaded or trained." + (" The resource plan does NOT fit." if fits is False else ""))
        return 1 if fits is False else 0
    if fits is False and not ns.rehearse:
        raise ConfigError("The resource plan above does not fit the card; nothing was loaded. Use one of its "
                          "settings that fit, or pass --gpu for the card you actually have.")
    resume = None
    if ns.resume is not None and not ns.rehearse:  # checked before anything starts or loads
        from trainers.checkpoints import check_resume

        resume = str(check_resume(cfg, ns.resume).path)
    if cfg.num_processes > 1 and not ns.rehearse and not in_distributed_launch():
        return _launch(cfg, plan, resume)
    if ns.rehearse:
        from trainers.launch import rehearsal_config

        cfg = rehearsal_config(cfg)
        print(f"rehearsal: one CPU step on the tiny model, {cfg.dataset} x {cfg.dataset_limit}, backend "
              f"{cfg.backend}, output {cfg.output_dir}", flush=True)
    try:
        trainer = train(cfg, resume=resume)
    except TrainingStopped as stop:
        record_stop(cfg.output_dir, stop)
        print(stop, file=sys.stderr, flush=True)
        return stop.exit_status
    state = trainer.state
    last: dict[str, Any] = next((h for h in reversed(state.log_history) if "reward" in h), {})
    if trainer.accelerator.is_main_process:  # the ranks' logged metrics are the same gathered means
        print(f"trained {state.global_step} steps; last logged reward {last.get('reward')!r}; "
              f"output in {cfg.output_dir}")
    return 0
