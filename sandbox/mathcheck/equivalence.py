r"""Answer equivalence on top of math-verify (runs inside the checker's worker processes).

math-verify (``huggingface/Math-Verify``) parses LaTeX into sympy and compares with
many strategies (numbers with rounding, symbolic simplification, sets, tuples,
intervals, equations ``x=3`` vs ``3``, percentages, ``^\circ``, ``\text{}`` units,
thousands separators). This module adds what its defaults get wrong on our data:

- currency ``\$36`` and thin spaces ``1\,000`` are removed before parsing;
- *numeric tolerance*: ``8.7 \times 10^{8}`` vs ``870000000`` fails math-verify's
  fixed 6-decimal rounding (binary floats); two real numbers within a relative
  ``rel_tol`` (1e-9) are equal when at least one is a decimal (exact integers and
  fractions must match exactly: ``11111111100`` is not ``11111111101``);
- *tiny-number guard*: math-verify's rounding calls ``2^{-99}`` and ``2^{-98}`` equal
  (issue #14); when both numbers are below ``tiny_abs`` and differ by more than
  ``tiny_rel_tol`` relatively, the match is rejected;
- *multi-part answers* (``require="all"``): every gold part must match a distinct
  predicted part, with no extra parts (a bijection, found by augmenting paths).

math-verify's own ``signal.alarm`` timeouts are disabled (``parsing_timeout=None``,
``timeout_seconds=None``): they turn a timeout into ``False`` (a silent wrong answer) and
cannot interrupt long C-level big-integer arithmetic (issue #65). The hard limit is
enforced by the parent, which kills the worker (:mod:`sandbox.mathcheck.pool`).
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import sympy
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from sandbox.mathcheck.config import EquivalenceConfig
from sandbox.mathcheck.extract import split_top_level

DEFAULT_EQUIVALENCE = EquivalenceConfig()

__all__ = ["EquivalenceConfig", "judge", "answers_equivalent", "warm_up"]

logging.getLogger("math_verify").setLevel(logging.ERROR)

# LaTeX only: math-verify's plain-expression extractor, given an answer whose LaTeX does
# not parse, returns some number found inside it ("\\hbar \\omega(v+1/2) - ..." -> 2),
# which would make two different unparseable answers "equal".
_EXTRACTION = (LatexExtractionConfig(boxed_match_priority=0),)
# the evaluation fallback reads free text: LaTeX first, then plain expressions ("the answer is 105")
_FALLBACK_EXTRACTION = (LatexExtractionConfig(), ExprExtractionConfig())
_CURRENCY_RE = re.compile(r"\\\$|\\text\{\s*\\?\$\s*\}")
_DIGIT_SPACE_RE = re.compile(r"(?<=\d)(?:\\[,;!: ]|~)+(?=\d)")
_WS_RE = re.compile(r"\s+")
_SIZING_RE = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?![A-Za-z])")
_ONE_TOKEN_SCRIPT_RE = re.compile(r"([_^])\{([A-Za-z0-9])\}")
_MATHLIKE_RE = re.compile(r"[\\^_{}=+\-*/0-9,]")
_BASED_RE = re.compile(r"^(?P<digits>[0-9A-Za-z]+)_\{?(?P<base>\d+)\}?$")
_DIGITS_RE = re.compile(r"^(?P<digits>[0-9A-Za-z]+)$")
_WRAPPER_RE = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox)\s*\{")


@dataclass(frozen=True)
class _Outcome:
    equal: bool
    reason: str


def clean_answer(text: str) -> str:
    """Remove currency signs, digit-group spacing and a final period, which math-verify does not parse."""
    text = _CURRENCY_RE.sub("", text)
    text = _DIGIT_SPACE_RE.sub("", text)
    text = text.strip()
    while text.endswith(".") and not text.endswith("\\."):
        text = text[:-1].rstrip()
    return text


def unwrap_text(text: str) -> str | None:
    r"""``\text{p-q}`` -> ``p-q`` when one text wrapper spans the whole answer, else ``None``."""
    text = text.strip()
    m = _WRAPPER_RE.match(text)
    if not m or not text.endswith("}"):
        return None
    depth = 0
    for i in range(m.end() - 1, len(text)):
        if text[i] == "{" and text[i - 1] != "\\":
            depth += 1
        elif text[i] == "}" and text[i - 1] != "\\":
            depth -= 1
            if depth == 0:
                if i != len(text) - 1:
                    return None  # the wrapper closes before the end: "\\text{a} + b"
                return text[m.end():i].strip() or None
    return None


def _text_key(text: str) -> str:
    """Spelling-insensitive form for answers math-verify cannot parse (``E_{1}`` == ``E_1``)."""
    text = _WS_RE.sub("", clean_answer(text))
    text = _SIZING_RE.sub("", text).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return _ONE_TOKEN_SCRIPT_RE.sub(r"\1\2", text)


def _parse(text: str) -> list[Any]:
    return parse("\\boxed{" + clean_answer(text) + "}", extraction_config=_EXTRACTION,
                 parsing_timeout=None, raise_on_error=False)


@functools.lru_cache(maxsize=4096)
def _parse_gold(text: str) -> tuple[Any, ...]:
    """Gold answers repeat across samples of one problem: parse each once per worker."""
    return tuple(_parse(text))


def _is_number(expr: Any) -> bool:
    return isinstance(expr, sympy.Expr) and bool(expr.is_number)


def _real_value(expr: Any, digits: int = 30) -> sympy.Float | None:
    """``expr`` as a finite real Float, or ``None`` if it is not a plain real number."""
    if not isinstance(expr, sympy.Expr) or not expr.is_number:
        return None
    value = expr.evalf(digits)
    if not isinstance(value, sympy.Float) or not value.is_finite:
        return None
    return value


def _rel_diff(a: sympy.Float, b: sympy.Float) -> float:
    scale = max(abs(a), abs(b))
    return 0.0 if scale == 0 else float(abs(a - b) / scale)


def answers_equivalent(gold: str, pred: str, cfg: EquivalenceConfig = DEFAULT_EQUIVALENCE) -> _Outcome:
    r"""Compare one gold answer with one predicted answer.

    A whole-answer ``\text{...}`` wrapper around math or a list (``\text{p-q}``,
    ``\text{D, E}``) is removed first;
    one around words (``\text{Monday}``, ``\text{(C)}``) is left to math-verify. Numbers
    with a base subscript (``4210_{5}``) are compared digit by digit, base included,
    since math-verify drops the subscript.

    Args:
        gold: gold answer text (LaTeX, no delimiters).
        pred: predicted answer text (LaTeX, no delimiters).
        cfg: comparison settings.

    Returns:
        The outcome (``equal`` and a short ``reason``).

    Raises:
        ValueError: the gold answer yields nothing at all to compare with.

    """
    gold, pred = _unwrap_math_text(gold), _unwrap_math_text(pred)
    based = _compare_based_numbers(gold, pred)
    if based is not None:
        return based
    return _compare(gold, pred, cfg)


def _unwrap_math_text(text: str) -> str:
    bare = unwrap_text(text)
    return bare if bare is not None and _MATHLIKE_RE.search(bare) else text


def _valid_in_base(digits: str, base: int) -> bool:
    if not 2 <= base <= 36:
        return False
    try:
        int(digits, base)
    except ValueError:
        return False
    return True


def _compare_based_numbers(gold: str, pred: str) -> _Outcome | None:
    """``4210_{5}`` vs ``4210_5``/``4210``: digits and base must match; ``None`` if not applicable."""
    g = _BASED_RE.match(clean_answer(gold))
    if g is None or not _valid_in_base(g["digits"], int(g["base"])):
        return None  # not a number in base b (e.g. the variable x_1)
    p = _BASED_RE.match(clean_answer(pred)) or _DIGITS_RE.match(clean_answer(pred))
    if p is None:
        return None
    same_digits = g["digits"].lstrip("0").lower() == p["digits"].lstrip("0").lower()
    same_base = p.groupdict().get("base") in (None, g["base"])
    if same_digits and same_base:
        return _Outcome(True, "equivalent (same digits and base)")
    return _Outcome(False, "not equivalent (digits or base differ)")


def _compare(gold: str, pred: str, cfg: EquivalenceConfig) -> _Outcome:
    """One comparison: math-verify, then the tiny-number guard, numeric tolerance, identical text."""
    gold_parsed = list(_parse_gold(gold))
    if not gold_parsed:
        raise ValueError(f"gold answer {gold!r:.200} could not be parsed by math-verify")
    pred_parsed = _parse(pred)
    if not pred_parsed:
        return _Outcome(False, "answer could not be parsed")
    equal = verify(gold_parsed, pred_parsed, float_rounding=cfg.float_rounding,
                   numeric_precision=cfg.numeric_precision, timeout_seconds=None, raise_on_error=False)
    g0, p0 = gold_parsed[0], pred_parsed[0]
    both_numbers = _is_number(g0) and _is_number(p0)  # cheap test first: evalf only when it matters
    if equal:
        if both_numbers:
            g_num, p_num = _real_value(g0), _real_value(p0)
            if (g_num is not None and p_num is not None and max(abs(g_num), abs(p_num)) < cfg.tiny_abs
                    and _rel_diff(g_num, p_num) > cfg.tiny_rel_tol):
                return _Outcome(False, "not equivalent (tiny numbers differ beyond rounding)")
        return _Outcome(True, "equivalent")
    if both_numbers and (g0.has(sympy.Float) or p0.has(sympy.Float)):
        g_num, p_num = _real_value(g0), _real_value(p0)
        if g_num is not None and p_num is not None and _rel_diff(g_num, p_num) <= cfg.rel_tol:
            return _Outcome(True, "equivalent (numeric tolerance)")
    if _text_key(gold) == _text_key(pred):
        return _Outcome(True, "equivalent (identical text)")
    return _Outcome(False, "not equivalent")


def _bijection(n_gold: int, n_pred: int, equal: Callable[[int, int], bool]) -> bool:
    """Tell whether every gold part can be paired with a distinct, equal predicted part."""
    owner: dict[int, int] = {}  # pred index -> gold index

    def augment(g: int, seen: set[int]) -> bool:
        for p in range(n_pred):
            if p in seen or not equal(g, p):
                continue
            seen.add(p)
            if p not in owner or augment(owner[p], seen):
                owner[p] = g
                return True
        return False

    return all(augment(g, set()) for g in range(n_gold))


def _judge_all(parts: Sequence[str], pred_parts: Sequence[str], cfg: EquivalenceConfig) -> dict[str, Any]:
    whole_gold, whole_pred = ", ".join(parts), ", ".join(pred_parts)
    if answers_equivalent(whole_gold, whole_pred, cfg).equal:
        return {"status": "correct", "matched_gold": whole_gold, "reason": "equivalent (all parts)"}
    if len(pred_parts) != len(parts):
        return {"status": "wrong", "matched_gold": None,
                "reason": f"expected {len(parts)} answer parts, got {len(pred_parts)}"}
    memo: dict[tuple[int, int], bool] = {}

    def equal(g: int, p: int) -> bool:
        if (g, p) not in memo:
            memo[(g, p)] = answers_equivalent(parts[g], pred_parts[p], cfg).equal
        return memo[(g, p)]

    if _bijection(len(parts), len(pred_parts), equal):
        return {"status": "correct", "matched_gold": whole_gold, "reason": "equivalent (each part)"}
    return {"status": "wrong", "matched_gold": None, "reason": "not every answer part matches"}


def final_expression(text: str) -> str | None:
    """The final answer math-verify's own extraction finds in free text (``"the answer is 105"`` -> ``"105"``)."""
    found = parse(text, extraction_config=_FALLBACK_EXTRACTION, parsing_timeout=None, raise_on_error=False)
    return str(found[-1]) if found else None


def judge(gold_values: Sequence[str], require: str, answer: str, answer_parts: Sequence[str],
          cfg: EquivalenceConfig = DEFAULT_EQUIVALENCE, fallback_text: str | None = None) -> dict[str, Any]:
    """Decide whether ``answer`` matches the gold answer(s); the worker's task function.

    Args:
        gold_values: normalised gold texts (alternatives for ``"any"``, parts for ``"all"``).
        require: ``"any"`` or ``"all"``.
        answer: the extracted answer (last box).
        answer_parts: the answer split into parts (used by ``"all"``).
        cfg: comparison settings.
        fallback_text: evaluation fallback (``MathCheckerConfig.answer_fallback``): text to take the
            final expression from (:func:`final_expression`) when ``answer`` is empty or does not match.

    Returns:
        ``{"status": "correct" | "wrong" | "internal_error", "matched_gold": str | None,
        "reason": str}``. Never raises: failures become ``internal_error``.

    """
    try:
        # an empty answer is the fallback's "no box at all"; anything else is judged as given
        direct = not (answer == "" and fallback_text is not None)
        out = _judge_answer(gold_values, require, answer, answer_parts, cfg) if direct else None
        if fallback_text is not None and (out is None or out["status"] == "wrong"):
            expr = final_expression(fallback_text)
            if expr is not None and expr != answer:
                retry = _judge_answer(gold_values, require, expr, split_top_level(expr), cfg)
                if retry["status"] == "correct" or out is None:
                    return {**retry, "extracted": expr, "reason": f"fallback extraction: {retry['reason']}"}
        if out is None:
            return {"status": "no_answer", "matched_gold": None, "reason": "no final expression found"}
        return out
    except Exception as exc:  # noqa: BLE001 - a checker bug must become INTERNAL_ERROR, never WRONG
        return {"status": "internal_error", "matched_gold": None, "reason": f"{type(exc).__name__}: {exc}"[:500]}


def _judge_answer(gold_values: Sequence[str], require: str, answer: str, answer_parts: Sequence[str],
                  cfg: EquivalenceConfig) -> dict[str, Any]:
    if require == "all":
        return _judge_all(gold_values, answer_parts or [answer], cfg)
    last = _Outcome(False, "not equivalent")
    for gold in gold_values:
        last = answers_equivalent(gold, answer, cfg)
        if last.equal:
            return {"status": "correct", "matched_gold": gold, "reason": last.reason}
    return {"status": "wrong", "matched_gold": None, "reason": last.reason}


def warm_up() -> None:
    """Run one tiny check so that math-verify's grammar and sympy caches are loaded."""
    judge(("\\frac{1}{2}",), "any", "0.5", ("0.5",))
