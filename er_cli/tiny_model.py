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
        "--multi-token-think-end", action="store_true",
        help="Make </think> several BPE tokens instead of one special token (for tests).",
    )
    add_dataclass_args(parser, TinyModelConfig)
    parser.set_defaults(func=_run)


def _run(ns: argparse.Namespace) -> int:
    from er_cli import dataclass_from_args
    from er_tools.tiny_model import TinyModelConfig, build_tiny_model

    path = build_tiny_model(
        ns.out, seed=ns.seed, think_end_single_token=not ns.multi_token_think_end,
        config=dataclass_from_args(TinyModelConfig, ns),
    )
    print(path)
    return 0
