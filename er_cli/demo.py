"""``er demo``: Math and Code episodes on the tiny model under a few budgets (CPU, no downloads)."""

from __future__ import annotations

import argparse

from er_cli import add_dataclass_args, dataclass_from_args

__all__ = ["register"]


def _run(ns: argparse.Namespace) -> int:
    from er_tools.demo import DemoConfig, run_demo

    run_demo(dataclass_from_args(DemoConfig, ns))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    from er_tools.demo import DemoConfig  # stdlib-light: er_tools.demo imports nothing heavy at module level

    parser = subparsers.add_parser(
        "demo", help="Run Math and Code episodes on the tiny model under several budgets.",
        description="Builds the demo's tiny model (trained on the embedded problems; cached in --out), runs the "
        "embedded Math and Code problems under each t:s budget with the local rewards, prints a table per budget "
        "and writes JSONL episode records.",
    )
    add_dataclass_args(parser, DemoConfig)
    parser.set_defaults(func=_run)
