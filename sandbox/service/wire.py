"""HTTP wire shapes of the reward service (pydantic), kept apart from the core types.

The judge core (:mod:`sandbox.core.judge`, :mod:`sandbox.core.spec`) and the math checker
(:mod:`sandbox.mathcheck`) know nothing of JSON or HTTP; this module holds the JSON
request/response shapes the server accepts and the client sends, and converts them
to and from the core types (as go-judge's ``cmd/go-judge/model`` does for its
``worker.Request``).

Endpoints and their shapes:

- ``POST /judge``: :class:`JudgeRequest` → :class:`JudgeResponse`. One submission
  (``code`` or ``completion`` plus ``tests``) or a batch (``submissions: [...]``), with
  optional request-wide ``limits``, ``compare_mode`` and ``stop_on_first_failure``.
- ``POST /run``: :class:`RunRequest` → :class:`RunResponse`: one raw program on one
  stdin, no comparison.
- ``POST /math/check``: :class:`MathCheckRequest` → :class:`MathCheckResponse`: one
  item (``gold`` plus ``completion`` or ``pred``) or a batch (``items: [...]``).

Conversions: ``SubmissionIn.to_core()`` / :func:`submission_payload`,
``MathItemIn.to_core()`` / :func:`math_payload`, and ``JudgeResponse.to_core()`` /
``MathCheckResponse.to_core()`` turn wire shapes into core types and back.

Size limits (:class:`WireLimits`) are checked by :func:`check_judge_size`,
:func:`check_run_size` and :func:`check_math_size`, which raise
:class:`RequestTooLarge` (HTTP 413) naming the limit and its setting.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sandbox.service.config import WireLimits

__all__ = [
    "WireLimits", "RequestTooLarge", "LimitsIn", "SubmissionIn", "JudgeRequest", "JudgeResponse",
    "RunRequest", "RunResponse", "MathItemIn", "MathCheckRequest", "MathCheckResponse", "ErrorResponse",
    "check_judge_size", "check_run_size", "check_math_size", "submission_payload", "math_payload",
]


class RequestTooLarge(ValueError):
    """A request exceeds one of the :class:`WireLimits` (HTTP 413)."""




_STRICT = ConfigDict(extra="forbid")


class _Request(BaseModel):
    """Base of request bodies: unknown fields are rejected (a typo is a 422, not ignored)."""

    model_config = _STRICT

    def wire(self) -> dict[str, Any]:
        """The JSON body to send: only the fields that were set (defaults stay implicit)."""
        return self.model_dump(exclude_none=True, exclude_unset=True)
Language = Literal["python", "cpp"]


class LimitsIn(BaseModel):
    """Per-request resource limits; ``None`` fields keep the judge's defaults."""

    model_config = _STRICT

    cpu_time_limit_s: float | None = Field(None, gt=0, le=600, description="CPU seconds per test.")
    wall_time_limit_s: float | None = Field(None, gt=0, le=1200, description="Wall-clock seconds per test.")
    memory_limit_bytes: int | None = Field(None, gt=0, description="Address-space/data limit per test, bytes.")
    output_limit_bytes: int | None = Field(None, gt=0, description="Largest stdout kept per test, bytes.")

    def overrides(self) -> dict[str, Any]:
        """The fields that were set, as ``JudgeConfig`` keyword overrides."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class SubmissionIn(BaseModel):
    """One program to judge and its test spec.

    Exactly one of ``code`` (a bare program) or ``completion`` (model output; the code
    block after ``</think>`` is extracted).
    """

    model_config = _STRICT

    code: str | None = Field(None, description="The program source.")
    completion: str | None = Field(None, description="Model output; the judge extracts the program from it.")
    tests: dict[str, Any] = Field(description="Test spec dict (sandbox.core.spec wire form: kind stdio|call|assert).")
    language: Language = Field("python", description="Program language.")

    @model_validator(mode="after")
    def _one_source(self) -> "SubmissionIn":
        if (self.code is None) == (self.completion is None):
            raise ValueError("give exactly one of 'code' (a program) or 'completion' (model output to extract from)")
        return self

    def to_core(self) -> Any:
        """The core :class:`sandbox.core.judge.Submission` (spec parsed).

        Raises:
            SpecError: the test spec is malformed (message quotes the bad value).

        """
        from sandbox.core.judge import Submission
        from sandbox.core.spec import TestSpec

        return Submission(spec=TestSpec.from_dict(self.tests), code=self.code, completion=self.completion,
                          language=self.language)


class JudgeRequest(_Request):
    """``POST /judge`` body.

    A single submission (top-level ``code``/``completion`` + ``tests``) or a batch
    (``submissions``), plus request-wide judge options.
    """

    model_config = _STRICT

    code: str | None = None
    completion: str | None = None
    tests: dict[str, Any] | None = None
    language: Language = "python"
    submissions: list[SubmissionIn] | None = Field(None, description="Batch form; excludes the single-form fields.")
    limits: LimitsIn | None = Field(None, description="Overrides of the judge's default limits.")
    compare_mode: Literal["lcb", "lenient"] | None = Field(None, description="Output comparison mode.")
    stop_on_first_failure: bool | None = Field(None, description="Stop a submission at its first failing test.")

    @model_validator(mode="after")
    def _one_form(self) -> "JudgeRequest":
        single = (self.code is not None or self.completion is not None or self.tests is not None
                  or "language" in self.model_fields_set)
        if self.submissions is not None:
            if single:
                raise ValueError("give either 'submissions' (batch) or top-level 'code'/'completion'/'tests'/"
                                 "'language', not both; in the batch form each submission carries its own 'language'")
            if not self.submissions:
                raise ValueError("'submissions' is empty; send at least one submission")
        else:
            if self.tests is None:
                raise ValueError("missing 'tests' (the test spec dict) or 'submissions' (batch form)")
            SubmissionIn(code=self.code, completion=self.completion, tests=self.tests, language=self.language)
        return self

    @property
    def is_batch(self) -> bool:
        """Whether the batch form (``submissions``) was used."""
        return self.submissions is not None

    def items(self) -> list[SubmissionIn]:
        """The submissions of either form, in order."""
        if self.submissions is not None:
            return list(self.submissions)
        return [SubmissionIn(code=self.code, completion=self.completion, tests=self.tests or {},
                             language=self.language)]

    def options(self) -> dict[str, Any]:
        """Judge-config overrides requested (limits, compare mode, stop policy)."""
        out = self.limits.overrides() if self.limits else {}
        if self.compare_mode is not None:
            out["compare_mode"] = self.compare_mode
        if self.stop_on_first_failure is not None:
            out["stop_on_first_failure"] = self.stop_on_first_failure
        return out


class JudgeResponse(BaseModel):
    """``POST /judge`` reply: one ``JudgeResult.to_dict()`` per submission, in order."""

    results: list[dict[str, Any]] = Field(description="sandbox.core.judge.JudgeResult.to_dict() per submission.")

    def to_core(self) -> list[Any]:
        """The results as :class:`sandbox.core.verdicts.JudgeResult` objects."""
        from sandbox.core.verdicts import JudgeResult

        return [JudgeResult.from_dict(r) for r in self.results]


class RunRequest(_Request):
    """``POST /run`` body: one raw program on one stdin; nothing is compared."""

    model_config = _STRICT

    source: str = Field(description="The program source.")
    stdin: str = Field("", description="Standard input fed to the program.")
    language: Language = "python"
    limits: LimitsIn | None = None


class RunResponse(BaseModel):
    """``POST /run`` reply: what the program did; nothing was compared.

    ``status`` is the runner's (``ok`` or ``compile_error``); ``test`` is the runner's
    TestRun record (status OK/RE/TLE/MLE/OLE/IE, exit code, signal, times, peak memory,
    truncated stdout/stderr; see :mod:`sandbox.runner.job`), ``None`` after a compile error.
    """

    status: str = Field(description="Runner status: 'ok' or 'compile_error'.")
    test: dict[str, Any] | None = Field(None, description="The runner's TestRun record for the one execution.")
    compile: dict[str, Any] | None = Field(None, description="Compilation record (C++), else null.")
    runner: dict[str, Any] = Field(default_factory=dict, description="Runner facts (uid, pid namespace, python).")


class MathItemIn(BaseModel):
    """One math check.

    Gold answer(s) against a full ``completion`` (the answer is extracted) or a bare
    predicted answer ``pred``.
    """

    model_config = _STRICT

    gold: str | list[str] = Field(description="Gold answer, or several (see 'require').")
    completion: str | None = Field(None, description="Model output; the final answer is extracted from it.")
    pred: str | None = Field(None, description="A bare predicted answer (no extraction).")
    require: Literal["any", "all"] = Field("any", description="'any': one gold answer suffices; 'all': every part.")

    @model_validator(mode="after")
    def _one_answer(self) -> "MathItemIn":
        if (self.completion is None) == (self.pred is None):
            raise ValueError("give exactly one of 'completion' (model output) or 'pred' (a bare answer)")
        if isinstance(self.gold, list) and not self.gold:
            raise ValueError("'gold' is an empty list; give at least one gold answer")
        return self

    def to_core(self) -> Any:
        """The core :class:`sandbox.mathcheck.MathItem`."""
        from sandbox.mathcheck import MathItem

        return MathItem(gold=self.gold, completion=self.completion, require=self.require, pred=self.pred)


class MathCheckRequest(_Request):
    """``POST /math/check`` body: one item (top-level fields) or a batch (``items``)."""

    model_config = _STRICT

    gold: str | list[str] | None = None
    completion: str | None = None
    pred: str | None = None
    require: Literal["any", "all"] = "any"
    items: list[MathItemIn] | None = Field(None, description="Batch form; excludes the single-form fields.")

    @model_validator(mode="after")
    def _one_form(self) -> "MathCheckRequest":
        single = (self.gold is not None or self.completion is not None or self.pred is not None
                  or "require" in self.model_fields_set)
        if self.items is not None:
            if single:
                raise ValueError("give either 'items' (batch) or top-level 'gold'/'completion'/'pred'/'require', not "
                                 "both; in the batch form each item carries its own 'require'")
            if not self.items:
                raise ValueError("'items' is empty; send at least one item")
        else:
            if self.gold is None:
                raise ValueError("missing 'gold' (the gold answer) or 'items' (batch form)")
            MathItemIn(gold=self.gold, completion=self.completion, pred=self.pred, require=self.require)
        return self

    @property
    def is_batch(self) -> bool:
        """Whether the batch form (``items``) was used."""
        return self.items is not None

    def all_items(self) -> list[MathItemIn]:
        """The items of either form, in order."""
        if self.items is not None:
            return list(self.items)
        assert self.gold is not None
        return [MathItemIn(gold=self.gold, completion=self.completion, pred=self.pred, require=self.require)]


class MathCheckResponse(BaseModel):
    """``POST /math/check`` reply: one ``MathVerdict.to_dict()`` per item, in order."""

    results: list[dict[str, Any]] = Field(description="sandbox.mathcheck MathVerdict.to_dict() per item.")

    def to_core(self) -> list[Any]:
        """The results as :class:`sandbox.mathcheck.MathVerdict` objects."""
        from sandbox.mathcheck.verdict import MathVerdict

        return [MathVerdict.from_dict(r) for r in self.results]


class ErrorResponse(BaseModel):
    """Every 4xx/5xx body: ``error`` (a short kind) and ``detail`` (the reason and fix)."""

    error: str
    detail: str


def submission_payload(sub: Any) -> dict[str, Any]:
    """Wire form (a :class:`SubmissionIn` dict) of a core submission.

    Args:
        sub: a :class:`sandbox.core.judge.Submission`, or a mapping with ``code`` or ``completion``,
            ``tests`` (or ``spec``; a dict or a :class:`~sandbox.core.spec.TestSpec`) and ``language``.

    Returns:
        The JSON-able dict (``None`` fields dropped).

    """
    if isinstance(sub, Mapping):
        data = dict(sub)
        if "spec" in data and "tests" not in data:
            data["tests"] = data.pop("spec")
    else:
        data = {"code": sub.code, "completion": sub.completion, "tests": sub.spec, "language": sub.language}
    if hasattr(data.get("tests"), "to_dict"):
        data["tests"] = data["tests"].to_dict()
    return {k: v for k, v in data.items() if v is not None}


def math_payload(item: Any) -> dict[str, Any]:
    """Wire form (a :class:`MathItemIn` dict) of a core math check.

    Args:
        item: a :class:`sandbox.mathcheck.MathItem`, a mapping with the :class:`MathItemIn`
            fields, or a ``(gold, completion)`` tuple; ``gold`` may be a ``GoldAnswer``.

    Returns:
        The JSON-able dict (``None`` fields dropped).

    """
    if isinstance(item, Mapping):
        data = dict(item)
    elif isinstance(item, tuple):
        data = {"gold": item[0], "completion": item[1]}
    else:
        data = {"gold": item.gold, "completion": item.completion, "pred": item.pred, "require": item.require}
    gold: Any = data.get("gold")
    if hasattr(gold, "values") and hasattr(gold, "require"):  # a GoldAnswer carries its own requirement
        data["gold"], data["require"] = list(gold.values), gold.require
    elif isinstance(gold, tuple):
        data["gold"] = list(gold)
    return {k: v for k, v in data.items() if v is not None}


def _check_text(name: str, text: str | None, limits: WireLimits) -> None:
    if text is not None and len(text) > limits.max_code_chars:
        raise RequestTooLarge(
            f"{name} has {len(text)} characters, over the limit of {limits.max_code_chars} "
            "(server setting max_code_chars / ER_SANDBOX_MAX_CODE_CHARS)."
        )


def check_judge_size(req: JudgeRequest, limits: WireLimits) -> None:
    """Raise :class:`RequestTooLarge` if ``req`` exceeds ``limits``.

    Args:
        req: a parsed judge request.
        limits: the server's size limits.

    Raises:
        RequestTooLarge: naming the offending field, its size and the setting to raise.

    """
    items = req.items()
    if len(items) > limits.max_batch_size:
        raise RequestTooLarge(
            f"batch has {len(items)} submissions, over the limit of {limits.max_batch_size}; split it "
            "(SandboxClient chunks automatically) or raise max_batch_size / ER_SANDBOX_MAX_BATCH_SIZE."
        )
    for i, sub in enumerate(items):
        where = f"submissions[{i}]" if req.is_batch else "request"
        _check_text(f"{where}.code", sub.code, limits)
        _check_text(f"{where}.completion", sub.completion, limits)
        cases = sub.tests.get("cases")
        if isinstance(cases, list) and len(cases) > limits.max_tests:
            raise RequestTooLarge(
                f"{where}.tests has {len(cases)} cases, over the limit of {limits.max_tests} "
                "(server setting max_tests / ER_SANDBOX_MAX_TESTS)."
            )


def check_run_size(req: RunRequest, limits: WireLimits) -> None:
    """Raise :class:`RequestTooLarge` if the program source is too long.

    Args:
        req: a parsed run request.
        limits: the server's size limits.

    Raises:
        RequestTooLarge: naming the size and the setting to raise.

    """
    _check_text("source", req.source, limits)


def check_math_size(req: MathCheckRequest, limits: WireLimits) -> None:
    """Raise :class:`RequestTooLarge` if ``req`` has too many or too long items.

    Args:
        req: a parsed math-check request.
        limits: the server's size limits.

    Raises:
        RequestTooLarge: naming the offending field, its size and the setting to raise.

    """
    items = req.all_items()
    if len(items) > limits.max_math_batch_size:
        raise RequestTooLarge(
            f"batch has {len(items)} items, over the limit of {limits.max_math_batch_size}; split it "
            "or raise max_math_batch_size / ER_SANDBOX_MAX_MATH_BATCH_SIZE."
        )
    for i, item in enumerate(items):
        where = f"items[{i}]" if req.is_batch else "request"
        _check_text(f"{where}.completion", item.completion, limits)
        _check_text(f"{where}.pred", item.pred, limits)
