r"""Output comparison modes (stdlib only): ``lcb`` and ``lenient``.

``lcb`` reproduces LiveCodeBench's stdio grader (``lcb_runner/evaluation/testing_util.py``,
``grade_stdio``): strip the whole output, split on ``"\n"``, strip each line; the line
counts must be equal; each line must be equal as a string, or else both lines must parse
as whitespace-separated ``Decimal`` tokens and the token lists must be equal (so ``1.0``
equals ``1`` and ``1.50`` equals ``1.5``, but ``0.3333333`` does not equal ``0.33333333``;
a line that does not parse fails).

``lenient`` accepts everything ``lcb`` accepts, and also: ``"\r\n"`` line ends; blank
lines anywhere (they are dropped); runs of spaces/tabs inside a line; tokens equal
case-insensitively when both are yes/no words (``YES`` = ``Yes`` = ``yes``); numeric
tokens within ``abs_tol``/``rel_tol`` (default 1e-6, Codeforces-style float checking),
compared as floats when either has a decimal point or exponent and exactly otherwise.

Call-based (``compare_call``): LiveCodeBench semantics: the JSON-decoded return value
(top-level tuple already turned into a list by the harness) must ``==`` the JSON-decoded
expected value; ``lenient`` also allows float tolerance element-wise.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

__all__ = ["CompareResult", "compare_output", "compare_call", "COMPARE_MODES", "lcb_equal", "lenient_equal"]

COMPARE_MODES = ("lcb", "lenient")
_YES_NO = {"yes", "no"}


@dataclass(frozen=True)
class CompareResult:
    """Whether output matched, and if not, where (for the result message)."""

    passed: bool
    message: str = ""


def _trunc(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[: n // 2] + "..." + text[-n // 2:]


def _decimals(line: str) -> list[Decimal] | None:
    try:
        values = [Decimal(tok) for tok in line.split()]
    except (InvalidOperation, ValueError):
        return None
    # a signalling NaN ("sNaN") raises on every comparison: such a line is compared as text only
    return None if any(v.is_snan() for v in values) else values


def _lcb_lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().split("\n")]


def lcb_equal(got: str, expected: str) -> CompareResult:
    """LiveCodeBench's stdio rule (see the module docstring)."""
    n_got, n_exp = got.strip().count("\n") + 1, expected.strip().count("\n") + 1  # = len(_lcb_lines(...))
    if n_got != n_exp:  # decided without splitting (a flood of lines costs one count)
        return CompareResult(False, f"line count {n_got} != expected {n_exp}")
    got_lines, exp_lines = _lcb_lines(got), _lcb_lines(expected)
    for i, (g, e) in enumerate(zip(got_lines, exp_lines, strict=True)):
        if g == e:
            continue
        gd, ed = _decimals(g), _decimals(e)
        if gd is None or ed is None or gd != ed:
            return CompareResult(False, f"line {i + 1}: {_trunc(g)!r} != {_trunc(e)!r}")
    return CompareResult(True)


def _is_floatish(tok: str) -> bool:
    return any(c in tok for c in ".eE") and tok.lower() not in ("nan", "inf", "-inf", "+inf")


def _token_equal(g: str, e: str, abs_tol: float, rel_tol: float) -> bool:
    if g == e:
        return True
    if g.lower() == e.lower() and g.lower() in _YES_NO:
        return True
    try:
        gd, ed = Decimal(g), Decimal(e)
    except (InvalidOperation, ValueError):
        return False
    if gd.is_snan() or ed.is_snan():  # raises on comparison; unequal strings already
        return False
    if gd == ed:
        return True
    if not (_is_floatish(g) or _is_floatish(e)):
        return False
    gf, ef = float(gd), float(ed)
    return math.isfinite(gf) and math.isfinite(ef) and math.isclose(gf, ef, rel_tol=rel_tol, abs_tol=abs_tol)


def lenient_equal(got: str, expected: str, abs_tol: float = 1e-6, rel_tol: float = 1e-6) -> CompareResult:
    """The lenient rule (see the module docstring): a superset of :func:`lcb_equal`."""
    if lcb_equal(got, expected).passed:
        return CompareResult(True)
    got_lines = [line.split() for line in got.replace("\r\n", "\n").split("\n") if line.strip()]
    exp_lines = [line.split() for line in expected.replace("\r\n", "\n").split("\n") if line.strip()]
    if len(got_lines) != len(exp_lines):
        return CompareResult(False, f"non-blank line count {len(got_lines)} != expected {len(exp_lines)}")
    for i, (g, e) in enumerate(zip(got_lines, exp_lines, strict=True)):
        if len(g) != len(e):
            return CompareResult(False, f"line {i + 1}: {len(g)} tokens != expected {len(e)}")
        for gt, et in zip(g, e, strict=True):
            if not _token_equal(gt, et, abs_tol, rel_tol):
                return CompareResult(False, f"line {i + 1}: token {_trunc(gt)!r} != {_trunc(et)!r}")
    return CompareResult(True)


def compare_output(got: str, expected: str, mode: str = "lcb") -> CompareResult:
    """Compare a program's stdout with the expected output.

    Args:
        got: the program's stdout.
        expected: the expected output.
        mode: ``"lcb"`` or ``"lenient"``.

    Returns:
        A :class:`CompareResult`.

    Raises:
        ValueError: unknown mode.

    """
    if mode == "lcb":
        return lcb_equal(got, expected)
    if mode == "lenient":
        return lenient_equal(got, expected)
    raise ValueError(f"compare mode {mode!r} unknown; use one of {COMPARE_MODES}")


def _close(a, b, abs_tol: float, rel_tol: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        try:
            return a == b or math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)
        except OverflowError:  # an int beyond float range: only exact equality counts
            return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, abs_tol, rel_tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], abs_tol, rel_tol) for k in a)
    return a == b


def compare_call(record: dict | None, expected: str, mode: str = "lcb") -> CompareResult:
    """Compare a call-based harness record with the expected JSON value.

    Args:
        record: the harness record (``{"ok": True, "return_json": ...}``) or None.
        expected: the expected value as JSON text.
        mode: ``"lcb"`` (exact ``==``) or ``"lenient"`` (float tolerance).

    Returns:
        A :class:`CompareResult`.

    Raises:
        ValueError: ``expected`` is not JSON (a spec error, not a wrong answer), or unknown mode.

    """
    if mode not in COMPARE_MODES:
        raise ValueError(f"compare mode {mode!r} unknown; use one of {COMPARE_MODES}")
    try:
        want = json.loads(expected)
    except ValueError as exc:
        raise ValueError(f"expected output is not JSON: {expected!r:.80} ({exc})") from None
    if not record or not record.get("ok"):
        return CompareResult(False, "no return value")
    if record.get("return_json") is None:
        return CompareResult(False, f"return value is not JSON-encodable: {record.get('return_repr', '')[:80]}")
    got = json.loads(record["return_json"])
    if isinstance(got, tuple):
        got = list(got)
    equal = got == want if mode == "lcb" else _close(got, want, 1e-6, 1e-6)
    if equal:
        return CompareResult(True)
    return CompareResult(False, f"returned {_trunc(record['return_json'])} != expected {_trunc(expected)}")
