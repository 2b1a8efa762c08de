"""The judge: spec + program (or completion) -> verdicts, via an isolation backend.

The trusted side of the sandbox: it extracts the code, builds a typed
:class:`~sandbox.core.jobs.RunJob`, has an :class:`~sandbox.core.isolation.IsolationBackend` run it,
and compares outputs itself (:mod:`sandbox.core.compare`). Infrastructure failures become
``INTERNAL_ERROR``, never ``WA``.

Example:
    >>> from sandbox.isolation import get_backend
    >>> judge = Judge(JudgeConfig(), get_backend("process"))          # doctest: +SKIP
    >>> judge.judge(Submission(code="print(int(input())*2)",
    ...     spec={"kind": "stdio", "cases": [{"input": "2", "output": "4"}]})).verdict  # doctest: +SKIP
    <Verdict.AC: 1>

"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sandbox.core import compare
from sandbox.core.errors import SandboxError
from sandbox.core.extract import extract_code
from sandbox.core.isolation import IsolationBackend
from sandbox.core.jobs import (
    FinishReason,
    Harness,
    HarnessKind,
    Language,
    Limits,
    OutcomeStatus,
    PythonMode,
    RunJob,
    RunOutcome,
    TestInput,
    TestRun,
)
from sandbox.core.spec import TestSpec
from sandbox.core.verdicts import JudgeResult, TestResult, Verdict

__all__ = ["Judge", "JudgeConfig", "Submission"]

_STATUS_VERDICT = {FinishReason.TLE: Verdict.TLE, FinishReason.MLE: Verdict.MLE, FinishReason.OLE: Verdict.OLE,
                   FinishReason.RE: Verdict.RE, FinishReason.IE: Verdict.INTERNAL_ERROR}


@dataclass
class JudgeConfig:
    """Judge settings.

    > Parameters that control the limits (per test; a spec's own limits win when
    > ``honour_statement_limits``)
    > Parameters that control comparison and stopping
    > Parameters that control execution
    """

    cpu_time_limit_s: float = field(default=6.0, metadata={"help": "CPU time limit per test (LCB uses 6 s)."})
    wall_time_limit_s: float = field(default=12.0, metadata={"help": "Wall-clock limit per test."})
    memory_limit_bytes: int = field(default=1 << 30, metadata={"help": "Peak memory (RSS) limit per test."})
    output_limit_bytes: int = field(default=64 << 20, metadata={"help": "stdout size limit per test (OLE)."})
    stderr_limit_bytes: int = field(default=64 << 10, metadata={"help": "stderr kept per test."})
    max_processes: int = field(default=64, metadata={"help": "RLIMIT_NPROC for the sandbox uid."})
    honour_statement_limits: bool = field(default=True, metadata={"help": "Use the spec's time/memory limits."})
    statement_time_factor: float = field(default=1.0, metadata={
        "help": "Multiplier on a spec's time limit (e.g. 2.0 for Python on C++-calibrated limits)."})
    wall_time_factor: float = field(default=2.0, metadata={
        "help": "Wall limit for a spec's own time limit: cpu * factor + 1 s (wall time is noisy on busy hosts)."})
    compare_mode: str = field(default="lcb", metadata={"help": "Output comparison: 'lcb' or 'lenient'."})
    stop_on_first_failure: bool = field(default=True, metadata={"help": "Stop at the first failing test (LCB)."})
    require_think_end: bool = field(default=True, metadata={
        "help": "Completions without </think> have no solution phase (NO_CODE)."})
    python_mode: str = field(default="fork", metadata={"help": "'fork' (zygote fast path) or 'exec'."})
    share_process: bool = field(default=False, metadata={
        "help": "Run the tests of one submission one after another in ONE forked process (stdio/call, fork mode; "
                "~10x cheaper per test, as LiveCodeBench does). Each test keeps its own limits, fds and __main__; "
                "module-level state of imported modules is shared. See sandbox.runner.session."})
    snippet_bytes: int = field(default=1000, metadata={"help": "stdout/stderr/expected kept in results."})
    max_concurrency: int = field(default=4, metadata={"help": "Parallel jobs in judge_batch/ajudge_batch."})

    def __post_init__(self) -> None:
        if self.compare_mode not in compare.COMPARE_MODES:
            raise ValueError(f"compare_mode={self.compare_mode!r} unknown; use one of {compare.COMPARE_MODES}")
        if self.python_mode not in ("fork", "exec"):
            raise ValueError(f"python_mode={self.python_mode!r} unknown; use 'fork' or 'exec'")
        for name in ("cpu_time_limit_s", "wall_time_limit_s", "memory_limit_bytes", "output_limit_bytes",
                     "statement_time_factor", "wall_time_factor", "max_concurrency"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be > 0")
        if self.wall_time_limit_s < self.cpu_time_limit_s:
            raise ValueError(f"wall_time_limit_s={self.wall_time_limit_s} < cpu_time_limit_s="
                             f"{self.cpu_time_limit_s}; raise wall_time_limit_s")


@dataclass
class Submission:
    """A program to judge: ``code``, or a ``completion`` to extract it from."""

    spec: TestSpec | dict[str, Any]
    code: str | None = None
    completion: str | None = None
    language: str = "python"

    def __post_init__(self) -> None:
        if (self.code is None) == (self.completion is None):
            raise ValueError("Submission needs exactly one of code= or completion=")
        if self.language not in ("python", "cpp"):
            raise ValueError(f"language={self.language!r} not supported; use 'python' or 'cpp'")


class Judge:
    """Judges submissions with one isolation backend.

    Args:
        config: the :class:`JudgeConfig`.
        backend: the isolation backend (see :func:`sandbox.isolation.get_backend`).

    """

    def __init__(self, config: JudgeConfig | None = None, backend: IsolationBackend | None = None) -> None:
        if backend is None:
            from sandbox.isolation import get_backend

            backend = get_backend("process")
        self.config = config or JudgeConfig()
        self.backend = backend

    # ------------------------------------------------------------ building
    def limits_for(self, spec: TestSpec) -> Limits:
        """The runner limits for ``spec`` (the spec's own limits when honoured)."""
        cfg = self.config
        cpu, wall, mem = cfg.cpu_time_limit_s, cfg.wall_time_limit_s, cfg.memory_limit_bytes
        if cfg.honour_statement_limits and spec.time_limit_s is not None:
            cpu = spec.time_limit_s * cfg.statement_time_factor
            wall = cpu * cfg.wall_time_factor + 1.0
        if cfg.honour_statement_limits and spec.memory_limit_mb is not None:
            mem = int(spec.memory_limit_mb * (1 << 20))
        return Limits(cpu_time_limit_s=cpu, wall_time_limit_s=wall, memory_limit_bytes=mem,
                      output_limit_bytes=cfg.output_limit_bytes, stderr_limit_bytes=cfg.stderr_limit_bytes,
                      max_processes=cfg.max_processes)

    def build_job(self, code: str, spec: TestSpec, language: str = "python") -> RunJob:
        """The :class:`~sandbox.core.jobs.RunJob` for ``code`` on ``spec``."""
        early = self.config.stop_on_first_failure
        if spec.kind == "stdio":
            harness = Harness(HarnessKind.STDIO)
            tests = tuple(TestInput(stdin=c.input, expected=c.output if early else None) for c in spec.cases)
        elif spec.kind == "call":
            harness = Harness(HarnessKind.CALL, fn_name=spec.fn_name)
            tests = tuple(TestInput(input=c.input, expected=c.output if early else None) for c in spec.cases)
        else:
            harness = Harness(HarnessKind.ASSERT, test_code=spec.test_code, prelude=spec.prelude)
            tests = (TestInput(),)
        return RunJob(source=code, tests=tests, language=Language(language), harness=harness,
                      limits=self.limits_for(spec), stop_on_first_failure=early, compare_mode=self.config.compare_mode,
                      python_mode=PythonMode(self.config.python_mode), share_process=self.config.share_process)

    def _prepare(self, sub: Submission) -> tuple[TestSpec, str | None]:
        spec = TestSpec.from_dict(sub.spec) if not isinstance(sub.spec, TestSpec) else sub.spec
        code = sub.code if sub.code is not None else extract_code(
            sub.completion or "", require_think_end=self.config.require_think_end)
        return spec, code

    # ------------------------------------------------------------ judging
    def judge(self, submission: Submission) -> JudgeResult:
        """Judge one submission.

        Args:
            submission: the program (or completion) and its spec.

        Returns:
            The :class:`JudgeResult` (INTERNAL_ERROR when the sandbox failed).

        Raises:
            SpecError: the spec is malformed (a caller error, not a verdict).

        """
        spec, code = self._prepare(submission)
        if code is None:
            return JudgeResult(Verdict.NO_CODE, total=spec.num_tests)
        try:
            outcome = self.backend.execute(self.build_job(code, spec, submission.language))
        except SandboxError as exc:
            return JudgeResult(Verdict.INTERNAL_ERROR, total=spec.num_tests, error=str(exc), code=code)
        return self.result_from_outcome(outcome, spec, code)

    def judge_batch(self, submissions: list[Submission]) -> list[JudgeResult]:
        """Judge many submissions, ``config.max_concurrency`` at a time, in input order."""
        if len(submissions) <= 1 or self.config.max_concurrency == 1:
            return [self.judge(s) for s in submissions]
        with ThreadPoolExecutor(max_workers=self.config.max_concurrency) as pool:
            return list(pool.map(self.judge, submissions))

    # The isolation backends block on pipes and sockets, so judging is written once, blocking;
    # the async methods only move it off the event loop.
    async def ajudge(self, submission: Submission) -> JudgeResult:
        """:meth:`judge` in a worker thread (never blocks the event loop)."""
        return await asyncio.to_thread(self.judge, submission)

    async def ajudge_batch(self, submissions: list[Submission]) -> list[JudgeResult]:
        """:meth:`judge_batch` in a worker thread (at most ``config.max_concurrency`` jobs in flight)."""
        return await asyncio.to_thread(self.judge_batch, submissions)

    # ------------------------------------------------------------ interpreting
    def result_from_outcome(self, outcome: RunOutcome, spec: TestSpec, code: str | None = None) -> JudgeResult:
        """Turn a :class:`~sandbox.core.jobs.RunOutcome` into a :class:`JudgeResult` (comparison happens here).

        Args:
            outcome: the runner's outcome.
            spec: the spec the job was built from.
            code: the program (kept in the result).

        Returns:
            The judge result.

        """
        total = spec.num_tests
        meta = dict(outcome.runner, backend=self.backend.name)
        if outcome.status is OutcomeStatus.ERROR:
            return JudgeResult(Verdict.INTERNAL_ERROR, total=total, error=str(outcome.error), code=code, meta=meta)
        if outcome.status is OutcomeStatus.COMPILE_ERROR:
            text = outcome.compile.stderr if outcome.compile else ""
            return JudgeResult(Verdict.CE, total=total, compile_output=text[: self.config.snippet_bytes * 4],
                               code=code, meta=meta)
        if any(not 0 <= run.index < total for run in outcome.tests):
            return JudgeResult(Verdict.INTERNAL_ERROR, total=total, error="malformed RunOutcome: test index out of "
                               f"range {[run.index for run in outcome.tests]}", code=code, meta=meta)
        tests = [self._test_result(run, spec) for run in outcome.tests]
        verdicts = [t.verdict for t in tests]
        if Verdict.INTERNAL_ERROR in verdicts:
            verdict = Verdict.INTERNAL_ERROR
        else:
            verdict = next((v for v in verdicts if v is not Verdict.AC), Verdict.AC)
            if verdict is Verdict.AC and len(tests) != total:
                verdict = Verdict.INTERNAL_ERROR
        error = "" if verdict is not Verdict.INTERNAL_ERROR else next(
            (t.message for t in tests if t.verdict is Verdict.INTERNAL_ERROR), f"ran {len(tests)} of {total} tests")
        return JudgeResult(verdict, tests=tests, passed=verdicts.count(Verdict.AC), total=total, error=error,
                           code=code, meta=meta)

    def _test_result(self, run: TestRun, spec: TestSpec) -> TestResult:
        n = self.config.snippet_bytes
        verdict, message, expected, got = self._test_verdict(run, spec)
        return TestResult(index=run.index, verdict=verdict, wall_time_s=run.wall_time_s, cpu_time_s=run.cpu_time_s,
                          peak_memory_bytes=run.peak_memory_bytes, exit_code=run.exit_code, signal=run.signal,
                          stdout=run.stdout[:n], stderr=run.stderr[-n:], expected=expected[:n], got=got[:n],
                          message=message[:n])

    def _test_verdict(self, run: TestRun, spec: TestSpec) -> tuple[Verdict, str, str, str]:
        status, record = run.status, run.record
        if status is FinishReason.RE and spec.kind == "assert" and (record or {}).get("error_type") == "AssertionError":
            return Verdict.WA, f"assertion failed {(record or {}).get('error', '')}".strip(), "", ""
        if status is not FinishReason.OK:
            detail = run.error or (record or {}).get("error") or ""
            return _STATUS_VERDICT[status], str(detail), "", ""
        if spec.kind == "assert":
            return Verdict.AC, "", "", ""
        case = spec.cases[run.index]
        if spec.kind == "stdio":
            res = compare.compare_output(run.stdout, case.output, self.config.compare_mode)
            return (Verdict.AC if res.passed else Verdict.WA), res.message, case.output, run.stdout
        res = compare.compare_call(record, case.output, self.config.compare_mode)
        got = (record or {}).get("return_json") or (record or {}).get("return_repr") or ""
        return (Verdict.AC if res.passed else Verdict.WA), res.message, case.output, got
