"""Typed run jobs, limits and outcomes: what crosses the isolation boundary (stdlib only).

The judge builds a :class:`RunJob`, an :class:`~sandbox.core.isolation.IsolationBackend`
runs it and returns a :class:`RunOutcome` with one :class:`TestRun` per executed test, whose
:class:`FinishReason` says how the program ended. These are plain dataclasses and enums, as
go-judge's ``envexec.Cmd``/``envexec.Result``/``envexec.Status``; their JSON form (the
runner's JSON-lines protocol 1, documented in :mod:`sandbox.runner.job`) exists only at the
boundary, through :meth:`RunJob.to_wire` and :meth:`RunOutcome.from_wire`. The runner,
which must stay stdlib-only inside the sandbox image, takes its limit defaults and status
names from here.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any

from sandbox.core.errors import RunnerProtocolError

__all__ = ["PROTOCOL_VERSION", "Language", "HarnessKind", "PythonMode", "FinishReason", "OutcomeStatus", "Limits",
           "DEFAULT_LIMITS", "COMPILE_LIMITS", "Harness", "TestInput", "RunJob", "CompileResult", "TestRun",
           "RunOutcome"]

PROTOCOL_VERSION = 1


class Language(str, enum.Enum):
    """Source language of a job."""

    PYTHON = "python"
    CPP = "cpp"


class HarnessKind(str, enum.Enum):
    """How a Python program is driven: stdin/stdout, a function call per test, or assert statements."""

    STDIO = "stdio"
    CALL = "call"
    ASSERT = "assert"


class PythonMode(str, enum.Enum):
    """``fork``: forked from the preloaded zygote (default); ``exec``: a fresh interpreter per test."""

    FORK = "fork"
    EXEC = "exec"


class FinishReason(str, enum.Enum):
    """How one test execution ended (what the program did; the judge maps it to a verdict).

    ``OK`` exit status 0 (and, for call/assert, the harness record was written); ``RE`` a
    non-zero exit or a signal; ``TLE`` the wall-clock limit, or the CPU limit; ``MLE`` peak
    memory over the limit or an allocation failure; ``OLE`` stdout over the output limit;
    ``IE`` the runner itself failed (never the program's fault).
    """

    OK = "OK"
    RE = "RE"
    TLE = "TLE"
    MLE = "MLE"
    OLE = "OLE"
    IE = "IE"


class OutcomeStatus(str, enum.Enum):
    """Status of a whole job: the tests ran, the program did not compile, or the runner failed."""

    OK = "ok"
    COMPILE_ERROR = "compile_error"
    ERROR = "error"


@dataclass(frozen=True)
class Limits:
    """Per-test resource limits (units in the names, as everywhere in the sandbox)."""

    cpu_time_limit_s: float = 6.0
    wall_time_limit_s: float = 12.0
    memory_limit_bytes: int = 1 << 30
    output_limit_bytes: int = 64 << 20
    stderr_limit_bytes: int = 64 << 10
    max_processes: int = 64
    max_open_files: int = 64
    address_space_slack_bytes: int = 256 << 20  # RLIMIT_AS = memory + slack (MLE is judged on peak RSS)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"limit {f.name}={value!r} must be a positive number")

    def to_wire(self) -> dict[str, float]:
        """The limits as the runner protocol's ``limits`` object."""
        return dataclasses.asdict(self)

    @classmethod
    def from_wire(cls, data: dict[str, Any] | None, base: Limits | None = None) -> Limits:
        """``base`` (default: the defaults) with the keys of ``data`` replaced; None values are ignored.

        Raises:
            ValueError: an unknown key or a non-positive value (the message lists the known keys).

        """
        data = {k: v for k, v in (data or {}).items() if v is not None}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown limit(s) {sorted(unknown)}; allowed: {sorted(known)}")
        return dataclasses.replace(base or cls(), **data)


DEFAULT_LIMITS = Limits()
COMPILE_LIMITS = Limits(cpu_time_limit_s=30.0, wall_time_limit_s=60.0, memory_limit_bytes=2 << 30,
                        output_limit_bytes=256 << 20, stderr_limit_bytes=16 << 10, max_open_files=256)


@dataclass(frozen=True)
class Harness:
    """How the program is driven (``fn_name`` for ``call``; ``test_code``/``prelude`` for ``assert``)."""

    kind: HarnessKind = HarnessKind.STDIO
    fn_name: str | None = None
    test_code: str | None = None
    prelude: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """The protocol's ``harness`` object."""
        if self.kind is HarnessKind.CALL:
            return {"kind": "call", "fn_name": self.fn_name}
        if self.kind is HarnessKind.ASSERT:
            return {"kind": "assert", "test_code": self.test_code, "prelude": self.prelude}
        return {"kind": "stdio"}


@dataclass(frozen=True)
class TestInput:
    """One test: ``stdin`` (stdio) or ``input`` (call, one JSON value per line); ``expected`` for early stop."""

    __test__ = False  # not a pytest test class

    stdin: str = ""
    input: str = ""
    expected: str | None = None


@dataclass(frozen=True)
class RunJob:
    """One program and its tests, to run inside the boundary (see :mod:`sandbox.runner.job`)."""

    source: str
    tests: tuple[TestInput, ...]
    language: Language = Language.PYTHON
    harness: Harness = field(default_factory=Harness)
    limits: Limits = DEFAULT_LIMITS
    stop_on_first_failure: bool = True
    compare_mode: str = "lcb"
    python_mode: PythonMode = PythonMode.FORK
    share_process: bool = False

    def to_wire(self) -> dict[str, Any]:
        """The RunJob JSON object of protocol 1."""
        if self.harness.kind is HarnessKind.STDIO:
            tests = [_with_expected({"stdin": t.stdin}, t) for t in self.tests]
        elif self.harness.kind is HarnessKind.CALL:
            tests = [_with_expected({"input": t.input}, t) for t in self.tests]
        else:
            tests = [{} for _ in self.tests]
        return {"protocol": PROTOCOL_VERSION, "language": self.language.value, "source": self.source,
                "harness": self.harness.to_wire(), "tests": tests, "limits": self.limits.to_wire(),
                "stop_on_first_failure": self.stop_on_first_failure, "compare_mode": self.compare_mode,
                "python_mode": self.python_mode.value, **({"share_process": True} if self.share_process else {})}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> RunJob:
        """Parse a RunJob JSON object (missing keys take the defaults).

        Raises:
            ValueError: an unknown key, language, harness kind, mode or limit.

        """
        allowed = {"protocol", "language", "source", "harness", "tests", "limits", "stop_on_first_failure",
                   "compare_mode", "python_mode", "share_process"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown RunJob keys {sorted(unknown)}; allowed: {sorted(allowed)}")
        h = dict(data.get("harness") or {"kind": "stdio"})
        harness = Harness(HarnessKind(h.pop("kind", "stdio")), **h)
        tests = tuple(TestInput(stdin=t.get("stdin", ""), input=t.get("input", ""), expected=t.get("expected"))
                      for t in data.get("tests") or ())
        return cls(source=data["source"], tests=tests, language=Language(data.get("language", "python")),
                   harness=harness, limits=Limits.from_wire(data.get("limits")),
                   stop_on_first_failure=bool(data.get("stop_on_first_failure", True)),
                   compare_mode=data.get("compare_mode", "lcb"),
                   python_mode=PythonMode(data.get("python_mode", "fork")),
                   share_process=bool(data.get("share_process", False)))

    def deadline_s(self, slack_s: float = 30.0) -> float:
        """An upper bound for how long the runner may take (for transport timeouts).

        Args:
            slack_s: added for compilation start-up and transfers.

        Returns:
            Seconds: number of tests x wall limit (+ the compile wall limit for C++) + slack.

        """
        compile_s = COMPILE_LIMITS.wall_time_limit_s if self.language is Language.CPP else 0.0
        return max(1, len(self.tests)) * float(self.limits.wall_time_limit_s) + compile_s + slack_s


def _with_expected(test: dict[str, Any], inp: TestInput) -> dict[str, Any]:
    if inp.expected is not None:
        test["expected"] = inp.expected
    return test


@dataclass(frozen=True)
class CompileResult:
    """The compile step of a C++ job (or the syntax check of a Python one)."""

    ok: bool
    stderr: str = ""
    wall_time_s: float = 0.0
    status: FinishReason | None = None


@dataclass(frozen=True)
class TestRun:
    """What one test execution did (the runner's TestRun record, typed)."""

    __test__ = False  # not a pytest test class

    index: int
    status: FinishReason
    exit_code: int | None = None
    signal: int | None = None
    cpu_time_s: float = 0.0
    wall_time_s: float = 0.0
    peak_memory_bytes: int = 0
    stdout: str = ""
    stdout_bytes: int = 0
    stdout_truncated: bool = False
    stderr: str = ""
    stderr_truncated: bool = False
    record: dict[str, Any] | None = None  # the harness record (call/assert), see sandbox.runner.harness
    matched: bool | None = None  # the runner's early-stop pre-check against ``expected``
    error: str | None = None  # why IE (or a harness message)
    pid_namespace: bool = False

    def to_wire(self) -> dict[str, Any]:
        """The TestRun JSON object of protocol 1."""
        return {**dataclasses.asdict(self), "status": self.status.value}


@dataclass(frozen=True)
class RunOutcome:
    """The runner's answer for one job."""

    status: OutcomeStatus
    tests: tuple[TestRun, ...] = ()
    error: str | None = None
    compile: CompileResult | None = None
    stopped_early: bool = False
    runner: dict[str, Any] = field(default_factory=dict)  # facts: uid, pid_namespace, python_mode, python

    def to_wire(self) -> dict[str, Any]:
        """The RunOutcome JSON object of protocol 1."""
        compile_ = None
        if self.compile is not None:
            compile_ = {**dataclasses.asdict(self.compile),
                        "status": self.compile.status.value if self.compile.status else None}
        return {"protocol": PROTOCOL_VERSION, "status": self.status.value, "error": self.error, "compile": compile_,
                "tests": [t.to_wire() for t in self.tests], "stopped_early": self.stopped_early,
                "runner": dict(self.runner)}

    @classmethod
    def from_wire(cls, data: Any) -> RunOutcome:
        """Validate and type an answer received from across the boundary.

        Args:
            data: the decoded JSON answer.

        Returns:
            The outcome.

        Raises:
            RunnerProtocolError: not a protocol-1 RunOutcome (wrong shape, unknown status or key).

        """
        if not isinstance(data, dict) or data.get("protocol") != PROTOCOL_VERSION or not isinstance(
                data.get("tests"), list):
            raise RunnerProtocolError(f"runner answered something that is not a protocol-1 RunOutcome: {data!r:.200}")
        try:
            status = OutcomeStatus(data.get("status"))
            tests = tuple(_test_run(t) for t in data["tests"])
            comp = data.get("compile")
            compile_ = None if comp is None else CompileResult(
                ok=bool(comp["ok"]), stderr=comp.get("stderr", ""), wall_time_s=float(comp.get("wall_time_s", 0.0)),
                status=FinishReason(comp["status"]) if comp.get("status") else None)
        except (KeyError, TypeError, ValueError) as exc:
            raise RunnerProtocolError(f"malformed RunOutcome ({type(exc).__name__}: {exc}): {data!r:.200}") from None
        return cls(status=status, tests=tests, error=data.get("error"), compile=compile_,
                   stopped_early=bool(data.get("stopped_early", False)), runner=dict(data.get("runner") or {}))


_TEST_RUN_FIELDS = {f.name for f in dataclasses.fields(TestRun)}


def _test_run(data: dict[str, Any]) -> TestRun:
    unknown = set(data) - _TEST_RUN_FIELDS
    if unknown:
        raise ValueError(f"unknown TestRun keys {sorted(unknown)}")
    return TestRun(**{**data, "index": int(data["index"]), "status": FinishReason(data["status"])})
