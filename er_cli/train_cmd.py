"""``er train``: GRPO with Elastic Reasoning rollouts, from a YAML recipe.

``er train --config trainers/recipes/tiny_cpu.yaml [--dry-run] [overrides]``. Every
:class:`trainers.config.ERTrainConfig` field is also a flag that overrides the recipe
(``--think-budget-tokens 512``); ``--grpo '{max_steps: 10}'`` merges into the
recipe's ``grpo`` mapping. ``--dry-run`` validates and prints the plan (and the
``accelerate launch`` command for multi-GPU recipes) without loading weights;
``--rehearse`` then runs one real CPU step of the recipe on the tiny model.
"""

from __future__ import annotations

import argparse
import dataclasses
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
    parser.add_argument("--rehearse", action="store_true",
                        help="Resolve the recipe's model, dataset and reward endpoint, then run ONE real step of the "
                        "recipe on CPU with the tiny model and 4 embedded problems (a laptop check of a cluster run).")
    add_dataclass_args(parser, ERTrainConfig)
    # only flags given on the command line override the recipe
    names = {f.name for f in dataclasses.fields(ERTrainConfig) if f.init}
    for action in parser._actions:
        if action.dest in names:
            action.default = argparse.SUPPRESS
    parser.set_defaults(func=_run)


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


def _launch(cfg: Any, plan: Any) -> int:
    """Start this machine's part of a multi-process job and report how it ended."""
    import shlex
    import sys

    from trainers.launch import launch_node

    cmd = plan.node_commands[cfg.machine_rank] if plan.node_commands else plan.accelerate_command
    print(f"launching machine_rank {cfg.machine_rank}: {shlex.join(cmd)}", flush=True)
    rc = launch_node(cfg, cmd)
    if rc != 0:
        print(f"er train: the launch on machine_rank {cfg.machine_rank} failed (exit status {rc}): a training "
              "process failed, was killed, or lost a peer (collectives give up after rendezvous_timeout_s="
              f"{cfg.rendezvous_timeout_s} s); the failing rank's error is above.", file=sys.stderr, flush=True)
    return rc


def _run(ns: argparse.Namespace) -> int:
    from trainers.config import load_recipe, resolve_recipe_path
    from trainers.launch import format_plan, in_distributed_launch, make_plan, train

    overrides = _overrides(ns)
    cfg = load_recipe(ns.config, overrides)
    recipe = str(resolve_recipe_path(ns.config))
    plan = make_plan(cfg, recipe=recipe, extra_argv=_override_argv(overrides))
    if not in_distributed_launch():  # the launching process printed it once for all ranks
        print(format_plan(plan), flush=True)
    if ns.dry_run:
        print("dry run: nothing loaded or trained.")
        return 0
    if cfg.num_processes > 1 and not ns.rehearse and not in_distributed_launch():
        return _launch(cfg, plan)
    if ns.rehearse:
        from trainers.launch import rehearsal_config

        cfg = rehearsal_config(cfg)
        print(f"rehearsal: one CPU step on the tiny model, {cfg.dataset} x {cfg.dataset_limit}, backend "
              f"{cfg.backend}, output {cfg.output_dir}", flush=True)
    trainer = train(cfg)
    state = trainer.state
    last: dict[str, Any] = next((h for h in reversed(state.log_history) if "reward" in h), {})
    if trainer.accelerator.is_main_process:  # the ranks' logged metrics are the same gathered means
        print(f"trained {state.global_step} steps; last logged reward {last.get('reward')!r}; "
              f"output in {cfg.output_dir}")
    return 0
