"""Row adapters: one dataset row (any of the paper's shapes) -> :class:`Problem`.

Each adapter takes ``(row, index, source)`` and returns a :class:`Problem` or raises
:class:`~er_env.data.schema.ProblemError` naming the row and the bad field. Shapes
handled:

Math (gold answers go through ``sandbox.mathcheck.parse_gold``, which unwraps
floats-as-strings, stringified lists and multi-part answers):
    ``math`` — ``{problem, answer}`` rows (AIME, AMC, MATH500, MATH train,
    Minerva, DeepScaleR); ``olympiad_bench`` — adds ``is_multiple_answer``.

Code (tests become the sandbox wire dict, see ``sandbox.core.spec``):
    ``codeforces`` — ``tests: [{input, output}]``, limits from the statement;
    ``code_contests`` — ``tests: {inputs, outputs}``, CodeContests limit lines;
    ``leetcode`` — ``tests: {functional: "def check(candidate): ..."}`` (or its
    Python-literal string) -> an assert spec; ``deepcoder`` — the DeepCoder hub rows
    (``tests`` JSON: LCB stdin/functional lists, PrimeIntellect
    ``stdin_stdout``/``function_call`` lists, TACO ``{inputs, outputs[, fn_name]}``);
    ``lcb`` — ``livecodebench/code_generation_lite`` rows (public and private
    tests, the private ones base64/zlib/pickle-packed, unpacked without running any
    pickle code).

    ``problem`` — rows already in the :class:`Problem` schema.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import pickle
import re
import zlib
from typing import Any, Callable, Mapping, Sequence

from er_env.data.schema import Problem, ProblemError

__all__ = ["ADAPTERS", "SHAPES", "Adapter", "detect_format", "tests_to_spec"]

Adapter = Callable[[Mapping[str, Any], int, str], Problem]

_STARTER_RE = re.compile(r"```python\n(.*?)```", re.DOTALL)
_CC_TIME_RE = re.compile(r"Time Limit:\s*\{'seconds':\s*(\d+),\s*'nanos':\s*(\d+)\}")
_CC_MEMORY_RE = re.compile(r"Memory Limit:\s*(\d+)\s*Bytes")


def _bad(source: str, index: int, why: str) -> ProblemError:
    return ProblemError(f"{source} row {index}: {why}")


def _text(row: Mapping[str, Any], key: str, source: str, index: int) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _bad(source, index, f"field {key!r} must be a non-empty string, got {value!r:.80}")
    return value.strip()


def _first_key(row: Mapping[str, Any], keys: Sequence[str], source: str, index: int) -> str:
    for key in keys:
        if isinstance(row.get(key), str) and row[key].strip():
            return _text(row, key, source, index)
    raise _bad(source, index, f"no statement field: expected one of {list(keys)}, got fields {sorted(row)}")


def _literal(value: Any, what: str, source: str, index: int) -> Any:
    """Parse a JSON or Python-literal string; pass other values through."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        pass
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise _bad(source, index, f"{what} is neither JSON nor a Python literal ({exc}): {value!r:.80}") from None


# ---------------------------------------------------------------------------- math
def _gold(raw: Any, multiple: bool, source: str, index: int) -> tuple[tuple[str, ...], str]:
    from sandbox.mathcheck import parse_gold  # the one place answer shapes are understood

    if raw is None or (isinstance(raw, str) and not raw.strip()) or (isinstance(raw, (list, tuple)) and not raw):
        raise _bad(source, index, f"no gold answer (answer={raw!r})")
    try:
        gold = parse_gold(raw, multiple=multiple)
    except (ValueError, TypeError) as exc:
        raise _bad(source, index, f"cannot parse the gold answer {raw!r:.80}: {exc}") from None
    values = tuple(str(v) for v in gold.values)
    if not values:
        raise _bad(source, index, f"the gold answer {raw!r:.80} parsed to no values")
    return values, gold.require


def _math_id(row: Mapping[str, Any], index: int, source: str) -> str:
    for key in ("unique_id", "id", "idx"):
        if row.get(key) not in (None, ""):
            return f"{source}/{row[key]}"
    return f"{source}/{index}"


def math_row(row: Mapping[str, Any], index: int, source: str) -> Problem:
    """``{problem|question, answer}`` -> math Problem (AIME, AMC, MATH, Minerva, DeepScaleR)."""
    question = _first_key(row, ("problem", "question"), source, index)
    multiple = bool(row.get("is_multiple_answer") or False)
    answers, required = _gold(row.get("answer"), multiple, source, index)
    keep = ("difficulty", "type", "subfield", "unit", "answer_type", "year", "problem_number", "url", "level")
    meta = {k: row[k] for k in keep if row.get(k) is not None}
    raw = row.get("answer")
    meta["raw_answer"] = raw if isinstance(raw, (str, int, float)) else repr(raw)
    return Problem(
        id=_math_id(row, index, source), task="math", question=question, answers=answers,
        answers_required=required, source=source, metadata=meta,
    )


# ---------------------------------------------------------------------------- code
def _statement_limits(statement: str) -> dict[str, float | None]:
    """Time/memory limits stated in a problem (Codeforces or CodeContests lines)."""
    from sandbox.core.spec import limits_from_statement  # Codeforces "Time Limit: N ms" / "Memory Limit: M MB"

    time_s, mem_mb = limits_from_statement(statement)
    if time_s is None and (m := _CC_TIME_RE.search(statement)):
        time_s = int(m.group(1)) + int(m.group(2)) / 1e9
    if mem_mb is None and (m := _CC_MEMORY_RE.search(statement)):
        mem_mb = int(m.group(1)) / 1e6  # CodeContests states bytes in SI units (256000000 = 256 MB)
    if mem_mb is not None and float(mem_mb).is_integer():
        mem_mb = int(mem_mb)
    return {"time_limit_s": float(time_s) if time_s else None, "memory_limit_mb": mem_mb or None}


def _case_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return "\n".join(value)  # some rows store input lines as a list
    return json.dumps(value)


def _stdio(cases: Sequence[tuple[Any, Any]], limits: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "kind": "stdio", "cases": [{"input": _case_text(i), "output": _case_text(o)} for i, o in cases],
        "time_limit_s": limits.get("time_limit_s"), "memory_limit_mb": limits.get("memory_limit_mb"),
    }


def _call_input(value: Any) -> str:
    """Call-based input as LCB stores it: one JSON value per line, one line per argument."""
    if isinstance(value, str):
        return value
    args = value if isinstance(value, (list, tuple)) else [value]
    return "\n".join(json.dumps(a) for a in args)


def _call_output(value: Any, wrapped: bool) -> str:
    if isinstance(value, str) and not wrapped:
        return value  # LCB: already JSON text
    if wrapped and isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]  # PrimeIntellect/TACO store the return value wrapped in a one-item list
    return json.dumps(value)


def _call(fn_name: str, cases: Sequence[tuple[Any, Any]], wrapped: bool, limits: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "kind": "call", "fn_name": fn_name,
        "cases": [{"input": _call_input(i), "output": _call_output(o, wrapped)} for i, o in cases],
        "time_limit_s": limits.get("time_limit_s"), "memory_limit_mb": limits.get("memory_limit_mb"),
    }


def _list_spec(tests: list, fn_name: str | None, limits: Mapping[str, Any], where: str) -> dict[str, Any]:
    if not all(isinstance(t, Mapping) and "input" in t and "output" in t for t in tests):
        raise ValueError(f"{where}: every test must be a dict with 'input' and 'output'")
    kinds = {str(t.get("testtype") or t.get("type") or "stdin") for t in tests}
    call_kinds = {"functional", "function_call"}
    if kinds & call_kinds:
        if not kinds <= call_kinds:
            raise ValueError(f"{where}: mixes call-based and stdin tests ({sorted(kinds)})")
        name = fn_name or next((t.get("fn_name") for t in tests if t.get("fn_name")), None)
        if not name:
            raise ValueError(f"{where}: call-based tests but no function name (metadata func_name / fn_name)")
        wrapped = "function_call" in kinds  # PrimeIntellect wraps outputs in a list
        return _call(str(name), [(t["input"], t["output"]) for t in tests], wrapped, limits)
    return _stdio([(t["input"], t["output"]) for t in tests], limits)


def tests_to_spec(tests: Any, *, fn_name: str | None = None, limits: Mapping[str, Any] | None = None,
                  where: str = "tests") -> dict[str, Any]:
    """Normalise any of the known test shapes into the sandbox wire dict.

    Args:
        tests: the parsed ``tests`` value (list or dict; parse strings first).
        fn_name: function name for call-based tests when the row keeps it elsewhere.
        limits: ``time_limit_s`` / ``memory_limit_mb`` to put in the spec.
        where: prefix for error messages.

    Returns:
        A ``{"kind": "stdio"|"call"|"assert", ...}`` dict.

    Raises:
        ValueError: unknown shape, no tests, or inconsistent tests.
    """
    limits = limits or {}
    if isinstance(tests, Mapping) and "kind" in tests:
        return dict(tests)  # already a wire dict
    if isinstance(tests, Mapping) and "functional" in tests:
        code = tests["functional"]
        if not isinstance(code, str) or not code.strip():
            raise ValueError(f"{where}: 'functional' must hold the check code, got {code!r:.80}")
        return {"kind": "assert", "test_code": code, "prelude": None, **{k: limits.get(k) for k in
                                                                         ("time_limit_s", "memory_limit_mb")}}
    if isinstance(tests, Mapping) and "inputs" in tests and "outputs" in tests:
        inputs, outputs = list(tests["inputs"]), list(tests["outputs"])
        if len(inputs) != len(outputs):
            raise ValueError(f"{where}: {len(inputs)} inputs but {len(outputs)} outputs")
        if not inputs:
            raise ValueError(f"{where}: no test cases")
        name = tests.get("fn_name") or fn_name
        if name:
            return _call(str(name), list(zip(inputs, outputs, strict=True)), True, limits)
        return _stdio(list(zip(inputs, outputs, strict=True)), limits)
    if isinstance(tests, list):
        if not tests:
            raise ValueError(f"{where}: no test cases")
        return _list_spec(tests, fn_name, limits, where)
    raise ValueError(
        f"{where}: unknown test shape {type(tests).__name__} {str(tests)[:80]!r}; expected a list of "
        "{input, output} dicts, {inputs, outputs} or {functional}"
    )


def _code_problem(
    row: Mapping[str, Any], index: int, source: str, question: str, tests: Any,
    fn_name: str | None = None, limits: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None,
) -> Problem:
    try:
        spec = tests_to_spec(tests, fn_name=fn_name, limits=limits, where=f"{source} row {index}")
    except (ValueError, TypeError, KeyError) as exc:
        raise ProblemError(str(exc)) from None
    meta = dict(extra or {})
    if "starter_code" not in meta and (m := _STARTER_RE.findall(question)):
        starter = m[-1].strip()
        if starter.startswith(("class ", "def ")):
            meta["starter_code"] = starter  # LeetCode statements end with the stub to complete
    native = row.get("id", row.get("question_id", row.get("uid")))
    pid = f"{source}/{native}" if native not in (None, "") else f"{source}/{index}"
    return Problem(id=pid, task="code", question=question, tests=spec, source=source, metadata=meta)


def codeforces_row(row: Mapping[str, Any], index: int, source: str) -> Problem:
    """Codeforces (CodeElo) row: sample tests, limits parsed from the statement."""
    question = _text(row, "problem", source, index)
    tests = _literal(row.get("tests"), "tests", source, index)
    return _code_problem(row, index, source, question, tests, limits=_statement_limits(question))


def leetcode_row(row: Mapping[str, Any], index: int, source: str) -> Problem:
    """LeetCode row: ``{functional: check code}`` -> assert spec; keeps the reference solution."""
    question = _text(row, "problem", source, index)
    tests = _literal(row.get("tests"), "tests", source, index)
    extra: dict[str, Any] = {}
    if isinstance(row.get("solutions"), str):
        extra["reference_solution"] = row["solutions"]
    return _code_problem(row, index, source, question, tests, extra=extra)


def deepcoder_row(row: Mapping[str, Any], index: int, source: str) -> Problem:
    """DeepCoder-Preview row (``problem``, ``tests`` JSON, optional ``metadata`` JSON, ``starter_code``)."""
    question = _first_key(row, ("problem", "question"), source, index)
    tests = _literal(row.get("tests"), "tests", source, index)
    meta = _literal(row.get("metadata") or {}, "metadata", source, index)
    meta = meta if isinstance(meta, Mapping) else {}
    fn_name = meta.get("func_name") or meta.get("fn_name")
    extra = {k: meta[k] for k in ("difficulty", "platform", "contest_date") if k in meta}
    if isinstance(row.get("starter_code"), str) and row["starter_code"].strip():
        extra["starter_code"] = row["starter_code"]
    limits = _statement_limits(question)
    return _code_problem(row, index, source, question, tests, fn_name=fn_name, limits=limits, extra=extra)


class _NoGlobalsUnpickler(pickle.Unpickler):
    """Unpickles plain data only: any class or function reference is refused."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from dataset tests (plain data only)")


def _lcb_private(value: Any, source: str, index: int) -> list:
    if not value:
        return []
    if isinstance(value, list):
        return value
    try:
        return json.loads(value)
    except ValueError:
        pass
    try:
        raw = zlib.decompress(base64.b64decode(value))
        text = _NoGlobalsUnpickler(io.BytesIO(raw)).load()
        return json.loads(text) if isinstance(text, (str, bytes)) else list(text)
    except (ValueError, zlib.error, pickle.UnpicklingError, EOFError, TypeError) as exc:
        raise _bad(source, index, f"cannot unpack private_test_cases ({exc})") from None


def lcb_row(row: Mapping[str, Any], index: int, source: str) -> Problem:
    """``livecodebench/code_generation_lite`` row -> stdio or call spec (public + private tests)."""
    question = _first_key(row, ("question_content", "problem", "question"), source, index)
    public = _literal(row.get("public_test_cases") or [], "public_test_cases", source, index)
    tests = list(public) + _lcb_private(row.get("private_test_cases"), source, index)
    meta = _literal(row.get("metadata") or {}, "metadata", source, index)
    meta = meta if isinstance(meta, Mapping) else {}
    extra = {k: row[k] for k in ("platform", "difficulty", "contest_date", "question_title") if row.get(k)}
    if isinstance(row.get("starter_code"), str) and row["starter_code"].strip():
        extra["starter_code"] = row["starter_code"]
    return _code_problem(row, index, source, question, tests, fn_name=meta.get("func_name"), extra=extra)


def problem_row(row: Mapping[str, Any], index: int, source: str) -> Problem:
    """A row already in the :class:`Problem` schema (``id``, ``task``, ``question``...)."""
    try:
        return Problem.from_dict(row)
    except ProblemError as exc:
        raise _bad(source, index, str(exc)) from None


#: format name -> adapter
ADAPTERS: dict[str, Adapter] = {
    "math": math_row,
    "olympiad_bench": math_row,
    "codeforces": codeforces_row,
    "code_contests": codeforces_row,
    "leetcode": leetcode_row,
    "deepcoder": deepcoder_row,
    "lcb": lcb_row,
    "problem": problem_row,
}


# ---------------------------------------------------------------------------- detection
def _parsed_tests(row: Mapping[str, Any]) -> Any:
    tests = row.get("tests")
    if isinstance(tests, str):
        try:
            return json.loads(tests)
        except ValueError:
            try:
                return ast.literal_eval(tests)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                return None
    return tests


def _has_statement(row: Mapping[str, Any]) -> bool:
    return any(isinstance(row.get(k), str) and row[k].strip() for k in ("problem", "question"))


def _io_list(tests: Any) -> bool:
    return isinstance(tests, list) and bool(tests) and all(
        isinstance(t, Mapping) and "input" in t and "output" in t for t in tests)


#: row shapes tried by :func:`detect_format`, in order: (format name, what it looks like, test)
SHAPES: tuple[tuple[str, str, Callable[[Mapping[str, Any]], bool]], ...] = (
    ("problem", "{id, task, question, ...} (this project's Problem schema)",
     lambda r: {"task", "question"} <= set(r)),
    ("lcb", "{question_content, public_test_cases, private_test_cases} (livecodebench/code_generation_lite)",
     lambda r: "question_content" in r or "public_test_cases" in r),
    ("leetcode", "{problem, tests: {functional}} (LeetCode)",
     lambda r: _has_statement(r) and isinstance(t := _parsed_tests(r), Mapping) and "functional" in t),
    ("code_contests", "{problem, tests: {inputs, outputs}} (CodeContests, TACO)",
     lambda r: _has_statement(r) and isinstance(t := _parsed_tests(r), Mapping) and {"inputs", "outputs"} <= set(t)),
    ("deepcoder", "{problem, tests: JSON text, metadata} (DeepCoder-Preview)",
     lambda r: _has_statement(r) and isinstance(r.get("tests"), str) and _parsed_tests(r) is not None),
    ("codeforces", "{problem, tests: [{input, output}]} (Codeforces, CodeElo)",
     lambda r: _has_statement(r) and _io_list(r.get("tests"))),
    ("olympiad_bench", "{problem, answer, is_multiple_answer} (OlympiadBench)",
     lambda r: _has_statement(r) and "answer" in r and "is_multiple_answer" in r),
    ("math", "{problem|question, answer} (AIME, AMC, MATH500, Minerva, MATH, DeepScaleR)",
     lambda r: _has_statement(r) and "answer" in r),
)


def detect_format(rows: Sequence[Any], source: str, sample: int = 50) -> str:
    """The row format of a file, from its first ``sample`` rows.

    Every shape in :data:`SHAPES` is tried on each sampled row; the shape most rows fit
    wins (ties: the earlier, more specific shape), so a few malformed rows (two MATH-train
    rows have no answer) do not change the verdict; they fail later, row by row.

    Args:
        rows: the file's rows.
        source: the file's name, for the error message.
        sample: how many leading rows to look at.

    Returns:
        A key of :data:`ADAPTERS`.

    Raises:
        ProblemError: no row fits any known shape (the message lists the shapes tried
            and names ``format=`` / ``--format``).
    """
    head = [r for r in rows[:sample] if isinstance(r, Mapping)]
    counts = {name: sum(1 for r in head if test(r)) for name, _, test in SHAPES}
    best = max(counts, key=lambda name: counts[name])  # max keeps the first of equal counts
    if counts[best]:
        return best
    if not head:
        first = f"{type(rows[0]).__name__} {rows[0]!r:.80}" if rows else "no rows at all"
        raise ProblemError(f"{source}: expected a dict per row, got {first}.")
    tried = "; ".join(f"{name}: {what}" for name, what, _ in SHAPES)
    raise ProblemError(
        f"{source}: the rows fit none of the known shapes (first row's fields: {sorted(head[0])}). Tried: {tried}. "
        "Pass the shape with format= (er eval run --format, er train's dataset_format), or convert the rows."
    )
