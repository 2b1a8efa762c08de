"""The ``er`` command line: thin subcommands over library calls.

Each subcommand lives in its own module under ``er_cli`` and exposes
``register(subparsers)``; heavy imports happen inside the handlers, so ``er --help``
is fast. Flags are generated from config dataclasses (:func:`add_dataclass_args`).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import typing
from typing import Any, Sequence

__all__ = ["main", "add_dataclass_args", "dataclass_from_args"]

#: subcommand modules, in the order ``er --help`` lists them
SUBCOMMANDS = ["demo", "tiny_model", "generate", "serve", "proxy_cmd", "sandbox_cmd", "math_cmd", "train_cmd",
               "eval_cmd", "doctor"]


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _optional(conv):  # "none" -> None for Optional fields
    def parse(text: str):
        return None if text.lower() in ("none", "null") else conv(text)

    parse.__name__ = getattr(conv, "__name__", "value")
    return parse


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, prefix: str = "",
                       required: Sequence[str] = ()) -> None:
    """Add one ``--flag`` per field of dataclass ``cls`` (help from ``metadata['help']``).

    Placeholders follow argparse's own style (the flag's name in capitals, ``--model MODEL``), as for
    every hand-written flag. A field named in ``required`` is a required flag (shown without brackets
    in the usage line, and without a default); other fields show their default once.
    """
    hints = typing.get_type_hints(cls)
    unknown = set(required) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"required names no field of {cls.__name__}: {sorted(unknown)}")
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        hint = hints[f.name]
        args = typing.get_args(hint)
        optional = type(None) in args
        base = next((a for a in args if a is not type(None)), hint) if args else hint
        if typing.get_origin(base) in (list, tuple):
            conv: Any = str
        else:
            conv = {bool: _parse_bool, int: int, float: float}.get(base, str)
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        )
        help_text = f.metadata.get("help", "")
        flag = f"--{prefix}{f.name.replace('_', '-')}"
        if f.name in required:
            parser.add_argument(flag, dest=f"{prefix}{f.name}", type=conv, required=True, help=help_text)
            continue
        if "default" not in help_text.lower():  # the help text may name its default itself
            help_text += f" (default: {default!r})"
        parser.add_argument(flag, dest=f"{prefix}{f.name}", type=_optional(conv) if optional else conv,
                            default=default, help=help_text)


def dataclass_from_args(cls: type, ns: argparse.Namespace, prefix: str = "") -> Any:
    """Build ``cls`` from the flags :func:`add_dataclass_args` added."""
    kwargs = {f.name: getattr(ns, f"{prefix}{f.name}") for f in dataclasses.fields(cls) if f.init}
    return cls(**kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="er", description="Elastic Reasoning gym: budgets, environments, rewards.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"er_cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"er_cli.{name}":
                continue
            raise
        module.register(sub)
    _describe(parser)
    return parser


def _describe(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand without a description of its own its one-line help as description.

    ``er COMMAND --help`` then always says what the command does (argparse shows ``help`` only
    in the parent's command list).
    """
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, child in action.choices.items():
                if not child.description and helps.get(name):
                    child.description = helps[name]
                _describe(child)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``er`` command line; returns the exit code."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    if not getattr(ns, "func", None):
        parser.print_help()
        return 2
    try:
        rc = int(ns.func(ns) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, not at interpreter exit
        return rc
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`er ... | head`): stop quietly, as coreutils do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at interpreter exit
        return 141
    except Exception as exc:  # a clear one-line error for users; tracebacks with ER_DEBUG=1
        import os

        if os.environ.get("ER_DEBUG"):
            raise
        print(f"er {ns.command}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
