"""``er tiny-model``: write the tiny R1-distill-style test model to a directory."""

from __future__ import annotations

import argparse

from er_cli import add_dataclass_args


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``tiny-model`` subcommand."""
    from er_tools.tiny_model import TinyModelConfig

    parser = subparsers.add_parser(
        "tiny-model",
        help="Build a tiny local R1-style model + tokenizer (seconds, CPU, no hub).",
        description="Build a tiny Qwen2-architecture model with an R1-distill tokenizer and chat template, "
        "briefly trained so greedy decoding closes </think> and ends with EOS.",
    )
    parser.add_argument("--out", required=True, help="Output directory (created if missing).")
    parser.add_argument("--seed", type=int, default=0, help="Seed for corpus, weights and training (default: 0).")
    parser.add_argument(
        "--task", choices=("chat", "sums"), default="chat",
        help="chat: the general tiny test model; sums: a start model for a first GRPO run that visibly learns "
        "(fine-tuned on small sums with long and short reasoning, about 40 s; the problems are written to "
        "OUT/train.jsonl; trainers/recipes/first_run_cpu.yaml trains it) (default: chat).",
    )
    parser.add_argument(
        "--multi-token-think-end", action="store_true",
        help="Make </think> several BPE tokens instead of one special token (for tests).",
    )
    parser.add_argument(
        "--force", action="store_true",
        help="Rebuild even when --out already holds a model built with the same settings.",
    )
    add_dataclass_args(parser, TinyModelConfig)
    parser.set_defaults(func=_run)


#: written next to the model: the settings it was built with (a rerun with the same settings reuses it)
SETTINGS_FILE = "er_tiny_model.json"


def _run(ns: argparse.Namespace) -> int:
    import dataclasses
    import json
    from pathlib import Path

    from er_cli import dataclass_from_args
    from er_tools.tiny_model import TinyModelConfig, build_tiny_model

    config = dataclass_from_args(TinyModelConfig, ns)
    if ns.task == "sums":
        if ns.multi_token_think_end or config != TinyModelConfig():
            raise SystemExit("er tiny-model: --task sums builds a fixed start model; drop --multi-token-think-end "
                             "and the model-shape flags, or use --task chat.")
    settings = {"seed": ns.seed, "task": ns.task, "multi_token_think_end": bool(ns.multi_token_think_end),
                "config": dataclasses.asdict(config)}
    marker = Path(ns.out) / SETTINGS_FILE
    if not ns.force and marker.is_file() and (Path(ns.out) / "config.json").is_file():
        try:
            same = json.loads(marker.read_text()) == settings
        except ValueError:
            same = False
        if same:
            print(f"{ns.out} already holds a tiny model built with these settings (--force rebuilds it)")
            return 0
    marker.unlink(missing_ok=True)
    if ns.task == "sums":
        from er_tools.synthetic_arith import build_quick_task

        path = build_quick_task(ns.out, seed=ns.seed)
    else:
        path = build_tiny_model(ns.out, seed=ns.seed, think_end_single_token=not ns.multi_token_think_end,
                                config=config)
    (path / SETTINGS_FILE).write_text(json.dumps(settings, indent=1) + "\n")
    print(path)
    return 0
