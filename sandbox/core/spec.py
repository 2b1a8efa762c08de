r"""Test specs: one normalised schema for stdio, call-based and assert-style tests (stdlib only).

Wire form (plain JSON dict, what dataset loaders emit)::

    {"kind": "stdio", "cases": [{"input": "...", "output": "..."}],
     "time_limit_s": 2.0|null, "memory_limit_mb": 256|null}
    {"kind": "call", "fn_name": "maxSum", "cases": [{"input": "<one JSON value per line>", "output": "<JSON>"}], ...}
    {"kind": "assert", "test_code": "def check(candidate): ...\n\ncheck(Solution().f)", "prelude": null|"...", ...}

``null`` limits mean the judge's defaults. Codeforces statements' ``Time Limit: N ms`` /
``Memory Limit: M MB`` lines are parsed by :func:`limits_from_statement`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from sandbox.core.errors import SpecError

__all__ = ["TestCase", "TestSpec", "SpecError", "limits_from_statement", "SPEC_KINDS"]

SPEC_KINDS = ("stdio", "call", "assert")
_TIME_RE = re.compile(r"time\s+limit\s*(?:per\s+test)?\s*[:=]?\s*([0-9]+(?:\.[0-9]+)?)\s*"
                      r"(ms|milliseconds?|s|secs?|seconds?)\b", re.IGNORECASE)
_MEMORY_RE = re.compile(r"memory\s+limit\s*(?:per\s+test)?\s*[:=]?\s*([0-9]+(?:\.[0-9]+)?)\s*"
                        r"(kb|kilobytes?|mb|megabytes?|mib|gb|gigabytes?|gib)\b", re.IGNORECASE)


@dataclass(frozen=True)
class TestCase:
    """One test: ``input`` (stdin, or JSON arguments one per line) and expected ``output``."""

    input: str
    output: str


@dataclass(frozen=True)
class TestSpec:
    """A normalised test spec.

    Attributes:
        kind: ``"stdio"``, ``"call"`` or ``"assert"``.
        cases: the tests (stdio/call); empty for assert.
        fn_name: function/method to call (call).
        test_code: test code run after the program (assert).
        prelude: extra code run before the program (assert), on top of the standard prelude.
        time_limit_s: per-test CPU time limit, or None for the judge default.
        memory_limit_mb: memory limit in MB, or None for the judge default.

    """

    __test__ = False  # not a pytest class

    __test__ = False  # not a pytest class

    kind: str
    cases: tuple[TestCase, ...] = ()
    fn_name: str | None = None
    test_code: str | None = None
    prelude: str | None = None
    time_limit_s: float | None = None
    memory_limit_mb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def num_tests(self) -> int:
        """Number of tests (1 for assert-style)."""
        return 1 if self.kind == "assert" else len(self.cases)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TestSpec":
        """Parse and validate the wire form.

        Args:
            data: the spec dict (see the module docstring).

        Returns:
            The spec.

        Raises:
            SpecError: malformed spec; the message quotes the bad value.

        """
        if isinstance(data, TestSpec):
            return data
        if not isinstance(data, dict):
            raise SpecError(f"test spec must be a dict, got {type(data).__name__}: {data!r:.100}")
        kind = data.get("kind")
        if kind not in SPEC_KINDS:
            raise SpecError(f"test spec 'kind' is {kind!r}; use one of {SPEC_KINDS}")
        allowed = {"kind", "cases", "fn_name", "test_code", "prelude", "time_limit_s", "memory_limit_mb"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise SpecError(f"unknown test spec keys {unknown}; allowed: {sorted(allowed)}")
        cases = _parse_cases(data.get("cases"), kind)
        fn_name, test_code, prelude = data.get("fn_name"), data.get("test_code"), data.get("prelude")
        if kind == "call" and (not isinstance(fn_name, str) or not fn_name.isidentifier()):
            raise SpecError(f"call spec needs 'fn_name' as a Python identifier, got {fn_name!r}")
        if kind == "assert" and (not isinstance(test_code, str) or not test_code.strip()):
            raise SpecError(f"assert spec needs a non-empty 'test_code' string, got {test_code!r:.100}")
        if prelude is not None and not isinstance(prelude, str):
            raise SpecError(f"'prelude' must be a string or null, got {prelude!r:.100}")
        return cls(kind=kind, cases=cases, fn_name=fn_name if kind == "call" else None,
                   test_code=test_code if kind == "assert" else None, prelude=prelude,
                   time_limit_s=_positive(data, "time_limit_s"), memory_limit_mb=_positive(data, "memory_limit_mb"))

    def to_dict(self) -> dict[str, Any]:
        """The wire form (inverse of :meth:`from_dict`)."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind != "assert":
            out["cases"] = [{"input": c.input, "output": c.output} for c in self.cases]
        if self.kind == "call":
            out["fn_name"] = self.fn_name
        if self.kind == "assert":
            out["test_code"] = self.test_code
            out["prelude"] = self.prelude
        out["time_limit_s"] = self.time_limit_s
        out["memory_limit_mb"] = self.memory_limit_mb
        return out


def _positive(data: dict, key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise SpecError(f"{key} must be a positive number or null, got {value!r}")
    return float(value)


def _parse_cases(raw: Any, kind: str) -> tuple[TestCase, ...]:
    if kind == "assert":
        if raw:
            raise SpecError(f"assert spec takes no 'cases' (put the tests in 'test_code'), got {raw!r:.100}")
        return ()
    if not isinstance(raw, list) or not raw:
        raise SpecError(f"{kind} spec needs a non-empty 'cases' list, got {raw!r:.100}")
    cases = []
    for i, case in enumerate(raw):
        if not isinstance(case, dict) or set(case) != {"input", "output"}:
            raise SpecError(f"case {i} must be {{'input': str, 'output': str}}, got {case!r:.100}")
        if not isinstance(case["input"], str) or not isinstance(case["output"], str):
            raise SpecError(f"case {i}: 'input' and 'output' must be strings, got {case!r:.100}")
        if kind == "call":
            _check_json_lines(i, case)
        cases.append(TestCase(case["input"], case["output"]))
    return tuple(cases)


def _check_json_lines(i: int, case: dict) -> None:
    for line in case["input"].split("\n"):
        try:
            json.loads(line)
        except ValueError:
            raise SpecError(f"case {i}: call input lines must each be JSON, bad line {line!r:.80}") from None
    try:
        json.loads(case["output"])
    except ValueError:
        raise SpecError(f"case {i}: call output must be JSON, got {case['output']!r:.80}") from None


def limits_from_statement(text: str) -> tuple[float | None, float | None]:
    r"""Parse ``Time Limit: N ms`` / ``Memory Limit: M MB`` lines of a problem statement.

    Args:
        text: the statement.

    Returns:
        ``(time_limit_s, memory_limit_mb)``; each None when absent.

    Example:
        >>> limits_from_statement("...\nTime Limit: 1000 ms\nMemory Limit: 256 MB\n")
        (1.0, 256.0)

    """
    time_s = memory_mb = None
    match = _TIME_RE.search(text or "")
    if match:
        value, unit = float(match.group(1)), match.group(2).lower()
        time_s = value / 1000.0 if unit.startswith("m") else value
    match = _MEMORY_RE.search(text or "")
    if match:
        value, unit = float(match.group(1)), match.group(2).lower()
        scale = {"k": 1 / 1024, "m": 1.0, "g": 1024.0}[unit[0]]
        memory_mb = value * scale
    return time_s, memory_mb
