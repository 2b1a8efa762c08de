r"""``er math check``: check one answer against a gold answer and print the verdict as JSON.

Examples::

    er math check --gold '\frac12' --pred 0.5
    er math check --gold "['69', '84']" --require all --pred '\boxed{84, 69}'
    er math check --gold 3 --completion "$(cat completion.txt)"
    er math check --gold 42 --pred 42 --endpoint http://127.0.0.1:8080   # on a reward service

Without ``--endpoint`` the check runs in this process (the checker flags below apply); with it, on
the reward service's ``/math/check`` (its own checker settings apply; the key comes from
``$ER_API_KEY`` or the file ``$ER_API_KEY_FILE``).

Exit status: 0 when the answer is correct, 1 when it is not (wrong, no answer,
timeout), 3 when the checker itself failed (internal error).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from er_cli import add_dataclass_args, dataclass_from_args

__all__ = ["register"]

EXIT_CORRECT, EXIT_NOT_CORRECT, EXIT_INTERNAL_ERROR = 0, 1, 3


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``er math`` (with its ``check`` action) to the ``er`` parser."""
    from sandbox.mathcheck.config import MathCheckerConfig

    math = subparsers.add_parser("math", help="Math answer checker (extraction + equivalence, hard timeouts).",
                                 description="Check math answers: extract the final answer and decide equivalence "
                                             "with math-verify, under a hard timeout, in-process or on a reward "
                                             "service. Actions: check.")
    math.set_defaults(func=lambda ns: math.print_help() or 2)
    actions = math.add_subparsers(dest="math_action", metavar="ACTION")
    check = actions.add_parser(
        "check", help="Check one answer against a gold answer; print the verdict as JSON.",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("--gold", action="append", required=True,
                       help="Gold answer (LaTeX, a number, or a Python-literal list); repeat for alternatives.")
    answer = check.add_mutually_exclusive_group(required=True)
    answer.add_argument("--pred", help="Predicted answer; its last \\boxed{} if it has one, else itself.")
    answer.add_argument("--completion", help="Full model completion; the answer is the last \\boxed{} "
                                             "after </think>.")
    check.add_argument("--require", choices=("any", "all"), default="any",
                       help="'any': one gold alternative suffices; 'all': the gold is a multi-part answer and "
                            "every part is required (default: 'any').")
    check.add_argument("--endpoint", default=None,
                       help="Reward service URL: check there instead of in this process (default: in-process).")
    add_dataclass_args(check, MathCheckerConfig)
    check.set_defaults(func=_check)


def _check(ns: argparse.Namespace) -> int:
    from sandbox.mathcheck.checker import MathChecker
    from sandbox.mathcheck.config import MathCheckerConfig

    config = dataclass_from_args(MathCheckerConfig, ns)
    gold = ns.gold[0] if len(ns.gold) == 1 else ns.gold
    if ns.endpoint:
        from sandbox.service.client import SandboxClient

        with SandboxClient(ns.endpoint) as client:
            verdict = client.check_math(gold, ns.completion, pred=ns.pred, require=ns.require)
        return _print(verdict)
    with MathChecker(config=config) as checker:
        if ns.pred is not None:
            verdict = checker.check_answer(gold, ns.pred, require=ns.require)
        else:
            verdict = checker.check(gold, ns.completion, require=ns.require)
    return _print(verdict)


def _print(verdict: Any) -> int:
    json.dump(verdict.to_dict(), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    if verdict.is_error:
        return EXIT_INTERNAL_ERROR
    return EXIT_CORRECT if verdict.correct else EXIT_NOT_CORRECT
