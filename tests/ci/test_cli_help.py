"""Every ``er`` command's ``--help``: a description, required flags shown as required, one placeholder style."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from er_cli import build_parser


def _commands() -> list[tuple[str, argparse.ArgumentParser]]:
    out = []

    def walk(name: str, parser: argparse.ArgumentParser) -> None:
        out.append((name, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, child in action.choices.items():
                    walk(f"{name} {sub}", child)

    walk("er", build_parser())
    return out


COMMANDS = _commands()


def test_every_command_is_listed():
    names = {name for name, _ in COMMANDS}
    for expected in ("er demo", "er tiny-model", "er generate", "er serve", "er proxy", "er sandbox serve",
                     "er sandbox judge", "er sandbox health", "er math check", "er train", "er eval run",
                     "er eval report"):
        assert expected in names


@pytest.mark.parametrize("name,parser", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_help(name, parser):
    text = parser.format_help()
    assert parser.description and parser.description.strip(), f"`{name} --help` has no description"
    usage = parser.format_usage()
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        flag = action.option_strings[-1]
        help_text = action.help or ""
        assert help_text.strip(), f"`{name} {flag}` has no help text"
        # a flag documented as required is required (usage without brackets), unless a --config file or an
        # environment variable may give it (the help says which)
        if "(required" in help_text and not action.required:
            assert re.search(r"--config|ER_[A-Z_]+", help_text), \
                f"`{name} {flag}` says required but is optional: {help_text!r}"
        if action.required:
            assert f"[{flag}" not in usage, f"`{name} {flag}` is required but shown in brackets"
            assert "(default:" not in help_text
        assert help_text.lower().count("default") <= 1 or "(default:" not in help_text, \
            f"`{name} {flag}` shows its default twice: {help_text!r}"
    # one placeholder style: argparse's (the flag's name in capitals), never a type name
    assert not re.search(r"--[\w-]+ (STR|INT|FLOAT|BOOL)\b", text), f"`{name}` uses type-name placeholders"
    assert not re.search(r"--[\w-]+ [A-Z]\b", text), f"`{name}` uses one-letter placeholders"


def test_a_closed_pipe_ends_a_command_quietly():
    """``er ... | head``: the reader goes away before the output is written; no error, exit 141 like coreutils."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen([sys.executable, "-m", "er_cli", "math", "check", "--gold", "2", "--pred", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == ""
