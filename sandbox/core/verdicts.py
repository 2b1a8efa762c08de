"""Verdicts and typed judge results (stdlib only).

Verdict causes (``Verdict``):

==================  ======================================================================
``INVALID``         zero value; never produced by a judge. A result carrying it is a bug.
``AC``              accepted: every test ran and matched.
``WA``              wrong answer: a test's output (stdio), return value (call) or an
                    assertion (assert) did not match. Never used for infrastructure faults.
``TLE``             time limit: wall-clock limit hit, or CPU time over the limit (SIGXCPU).
``MLE``             memory limit: peak RSS over the limit, or the program died of
                    ``MemoryError``/``std::bad_alloc`` under the address-space limit.
``RE``              runtime error: non-zero exit status, a signal, an uncaught exception
                    (other than AssertionError in assert-style tests), or an exit before
                    the harness record was written.
``CE``              compile error: Python syntax error or ``g++`` failure.
``OLE``             output limit: stdout larger than ``output_limit_bytes``.
``NO_CODE``         no program: the completion has no solution phase (no ``</think>``) or
                    no fenced code block after it.
``INTERNAL_ERROR``  the judge or the sandbox failed (runner crash, backend down, malformed
                    runner answer). Says nothing about the program; never a wrong answer.
==================  ======================================================================
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["Verdict", "TestResult", "JudgeResult"]


class Verdict(enum.IntEnum):
    """Outcome of judging a program (or one test). See the module docstring for causes."""

    INVALID = 0
    AC = 1
    WA = 2
    TLE = 3
    MLE = 4
    RE = 5
    CE = 6
    OLE = 7
    NO_CODE = 8
    INTERNAL_ERROR = 9

    @property
    def is_user_failure(self) -> bool:
        """True for verdicts caused by the program (not AC, not internal/invalid)."""
        return self not in (Verdict.AC, Verdict.INTERNAL_ERROR, Verdict.INVALID)

    @classmethod
    def parse(cls, value: "Verdict | str | int") -> "Verdict":
        """Verdict from its name (``"AC"``, case-insensitive) or number.

        Raises:
            ValueError: unknown verdict, quoting it.

        """
        if isinstance(value, Verdict):
            return value
        if isinstance(value, int):
            return cls(value)
        try:
            return cls[str(value).upper()]
        except KeyError:
            raise ValueError(f"unknown verdict {value!r}; use one of {[v.name for v in cls]}") from None


@dataclass
class TestResult:
    """One test's result.

    Attributes:
        index: test position in the spec.
        verdict: this test's verdict.
        wall_time_s / cpu_time_s: measured times.
        peak_memory_bytes: ``ru_maxrss`` of the program.
        exit_code / signal: how the program ended (None when unknown).
        stdout / stderr: truncated to ``JudgeConfig.snippet_bytes``.
        expected / got: truncated expected and actual output or return value.
        message: why the test failed (comparison detail, exception), or "".

    """

    __test__ = False  # not a pytest class

    index: int
    verdict: Verdict
    wall_time_s: float = 0.0
    cpu_time_s: float = 0.0
    peak_memory_bytes: int = 0
    exit_code: int | None = None
    signal: int | None = None
    stdout: str = ""
    stderr: str = ""
    expected: str = ""
    got: str = ""
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (verdict by name)."""
        return {**asdict(self), "verdict": self.verdict.name}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TestResult":
        """Inverse of :meth:`to_dict`."""
        known = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in data.items() if k in known}, "verdict": Verdict.parse(data["verdict"])})


@dataclass
class JudgeResult:
    """The judge's answer for one submission.

    Attributes:
        verdict: overall verdict (the first failing test's, or AC).
        tests: per-test results, in order (fewer than ``total`` after an early stop).
        passed: number of tests that passed.
        total: number of tests in the spec.
        compile_output: compiler / syntax error text (CE), else "".
        error: internal error detail (INTERNAL_ERROR), else "".
        code: the program judged (extracted from the completion when given one), or None.
        meta: runner facts (pid namespace, uid, python mode, backend).

    """

    verdict: Verdict
    tests: list[TestResult] = field(default_factory=list)
    passed: int = 0
    total: int = 0
    compile_output: str = ""
    error: str = ""
    code: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def pass_fraction(self) -> float:
        """Passed tests over all tests in the spec (0.0 when there are none)."""
        return self.passed / self.total if self.total else 0.0

    @property
    def reward(self) -> float:
        """Binary reward: 1.0 iff AC. Meaningless when :attr:`is_error`."""
        return 1.0 if self.verdict is Verdict.AC else 0.0

    @property
    def is_error(self) -> bool:
        """The judge failed; this result must not be used as a reward."""
        return self.verdict in (Verdict.INTERNAL_ERROR, Verdict.INVALID)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict, including ``pass_fraction``, ``reward`` and ``is_error``."""
        return {"verdict": self.verdict.name, "tests": [t.to_dict() for t in self.tests], "passed": self.passed,
                "total": self.total, "pass_fraction": self.pass_fraction, "reward": self.reward,
                "is_error": self.is_error, "compile_output": self.compile_output, "error": self.error,
                "code": self.code, "meta": dict(self.meta)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JudgeResult":
        """Inverse of :meth:`to_dict` (derived keys are ignored)."""
        return cls(verdict=Verdict.parse(data["verdict"]),
                   tests=[TestResult.from_dict(t) for t in data.get("tests", [])],
                   passed=int(data.get("passed", 0)), total=int(data.get("total", 0)),
                   compile_output=data.get("compile_output", ""), error=data.get("error", ""),
                   code=data.get("code"), meta=dict(data.get("meta") or {}))
