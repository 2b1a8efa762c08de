"""The reward service core: wire requests in, wire responses out, no HTTP.

:class:`SandboxService` owns one isolation backend, a judge configuration and a math
checker, and answers :mod:`sandbox.service.wire` requests. The FastAPI app
(:mod:`sandbox.service.server`) is a thin shell over it, and :class:`sandbox.service.client.SandboxClient`
in in-process mode (``base_url=None``) calls it directly, so both paths validate and
judge identically.

Concurrency: judging and math checks run in two bounded thread pools
(``judge_workers`` / ``math_workers`` threads), never on an event loop. The async methods
are the implementation (they await those pools); the blocking ones are thin wrappers that
run them on a background loop (:mod:`sandbox.service.loop`). More than ``max_pending`` submissions waiting for a judge
thread makes new requests fail fast with :class:`Overloaded` (HTTP 503, which clients
retry with backoff).

Errors (the server maps them to status codes): :class:`InvalidRequest` (422, the
request is wrong: bad spec, bad option), :class:`~sandbox.service.wire.RequestTooLarge` (413),
:class:`Overloaded` (503), :class:`ServiceError` (500: the core failed). A sandbox
failure inside one submission is not an exception: its result has verdict
``INTERNAL_ERROR``, which clients turn into an error reward, never a wrong answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from sandbox.core.errors import SandboxError, SpecError
from sandbox.core.jobs import OutcomeStatus, TestInput
from sandbox.mathcheck.errors import MathCheckError
from sandbox.service.config import ServiceConfig, options_dict
from sandbox.service.loop import run_sync
from sandbox.service.metrics import ServiceMetrics, TimedBackend
from sandbox.service.wire import (
    JudgeRequest,
    JudgeResponse,
    MathCheckRequest,
    MathCheckResponse,
    RunRequest,
    RunResponse,
    check_judge_size,
    check_math_size,
    check_run_size,
)

__all__ = ["ServiceConfig", "SandboxService", "InvalidRequest", "Overloaded", "ServiceError"]

#: the constructor argument that sizes each backend's worker pool
_POOL_SIZE_KEYS = {"process": "workers", "docker": "pool_size"}


class InvalidRequest(ValueError):
    """The request is well-formed JSON but cannot be judged (bad spec, bad option): HTTP 422."""


class Overloaded(RuntimeError):
    """Too many submissions are waiting; retry later: HTTP 503."""


class ServiceError(RuntimeError):
    """The core failed (backend crash, math pool gone): HTTP 500."""


class SandboxService:
    """Answers wire requests with the judge and the math checker.

    Args:
        config: the :class:`ServiceConfig`.
        backend: an isolation backend to use instead of building ``config.isolation``.
        math_checker: a math checker to use instead of building one (needs ``check_batch``).
        judge_factory: ``(JudgeConfig, backend) -> judge`` (default :class:`sandbox.core.judge.Judge`);
            tests pass a fake to exercise error paths.

    The backend and the math checker are built lazily on first use and closed by :meth:`close`.

    """

    def __init__(self, config: ServiceConfig | None = None, *, backend: Any = None, math_checker: Any = None,
                 judge_factory: Callable[[Any, Any], Any] | None = None) -> None:
        self.config = config or ServiceConfig()
        self.limits = self.config.wire_limits()
        self._base_judge_config = self.config.judge_config()
        self._backend = backend
        self._math = math_checker
        self._judge_factory = judge_factory
        self._lock = threading.Lock()
        self._pending = 0
        self._judge_pool = ThreadPoolExecutor(self.config.judge_workers, thread_name_prefix="er-judge")
        # each request's check_batch fans out over the checker's workers; several requests may overlap
        self._math_pool = ThreadPoolExecutor(self.config.math_workers, thread_name_prefix="er-math")
        self._closed = False
        # metrics: queue depth, jobs in flight, per-stage latency, worker restarts (sandbox.service.metrics)
        self.metrics = ServiceMetrics(lambda: self._backend, lambda: self._pending)

    # ------------------------------------------------------------------ components
    @property
    def backend(self) -> Any:
        """The isolation backend (built on first use)."""
        with self._lock:
            if self._backend is None:
                from sandbox.isolation import get_backend

                options = dict(options_dict(self.config.isolation_options))
                size_key = _POOL_SIZE_KEYS.get(self.config.isolation)
                if size_key:  # as many sandbox workers as judge threads, unless told otherwise
                    options.setdefault(size_key, self.config.judge_workers)
                try:
                    self._backend = get_backend(self.config.isolation, **options)
                except SandboxError as exc:
                    raise ServiceError(f"isolation backend {self.config.isolation!r} unavailable: {exc}") from exc
                except (TypeError, ValueError) as exc:
                    raise ServiceError(f"isolation backend {self.config.isolation!r} rejected isolation_options="
                                       f"{self.config.isolation_options!r}: {exc}") from exc
            return self._backend

    @property
    def math_checker(self) -> Any:
        """The math checker (worker processes start on first use)."""
        with self._lock:
            if self._math is None:
                from sandbox.mathcheck import MathChecker, MathCheckerConfig

                try:
                    cfg = MathCheckerConfig(timeout_s=self.config.math_timeout_s, workers=self.config.math_workers,
                                            **options_dict(self.config.math_options))
                except TypeError as exc:
                    raise ServiceError(f"math_options {self.config.math_options!r} rejected: {exc}") from None
                self._math = MathChecker(config=cfg)
            return self._math

    def _make_judge(self, overrides: dict[str, Any]) -> Any:
        base = self._base_judge_config
        if "cpu_time_limit_s" in overrides and "wall_time_limit_s" not in overrides:
            overrides["wall_time_limit_s"] = max(base.wall_time_limit_s, 2 * overrides["cpu_time_limit_s"])
        try:
            config = dataclasses.replace(base, **overrides)
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"judge options {overrides!r} rejected: {exc}") from None
        backend: Any = TimedBackend(self.backend, self.metrics)  # the backend, timed (sandbox.service.metrics)
        if self._judge_factory is not None:
            return self._judge_factory(config, backend)
        from sandbox.core.judge import Judge

        return Judge(config, backend)

    # ------------------------------------------------------------------ judge
    def _prepare_judge(self, req: JudgeRequest) -> tuple[Any, list[Any]]:
        check_judge_size(req, self.limits)
        judge = self._make_judge(req.options())
        subs = []
        for i, item in enumerate(req.items()):
            where = f"submissions[{i}].tests" if req.is_batch else "tests"
            try:
                subs.append(item.to_core())
            except (SpecError, ValueError, TypeError) as exc:
                raise InvalidRequest(f"{where}: {exc}") from None
        return judge, subs

    def _judge_one(self, judge: Any, sub: Any, admitted_at: float) -> dict[str, Any]:
        with self._lock:
            self._pending -= 1
        try:
            with self.metrics.job(admitted_at):
                return judge.judge(sub).to_dict()
        except SpecError as exc:
            raise InvalidRequest(str(exc)) from None
        # anything else is a bug in the core: it propagates (the HTTP edge answers 500 with its reason)

    def _admit(self, n: int) -> None:
        with self._lock:
            if self._closed:
                raise ServiceError("the sandbox service is closed")
            if self._pending + n > self.config.max_pending:
                raise Overloaded(f"{self._pending} submissions already waiting (max_pending="
                                 f"{self.config.max_pending}); retry later")
            self._pending += n

    async def ajudge(self, req: JudgeRequest) -> JudgeResponse:
        """Judge every submission of ``req``; awaits the judge thread pool (never blocks the loop).

        Args:
            req: the parsed request.

        Returns:
            One result dict per submission, in order.

        Raises:
            RequestTooLarge: over a size limit.
            InvalidRequest: malformed test spec or option.
            Overloaded: too many submissions waiting.
            ServiceError: the core failed.

        """
        judge, subs = self._prepare_judge(req)
        self._admit(len(subs))
        loop, now = asyncio.get_running_loop(), time.perf_counter()
        futures = [loop.run_in_executor(self._judge_pool, self._judge_one, judge, s, now) for s in subs]
        results = await asyncio.gather(*futures, return_exceptions=True)
        for res in results:
            if isinstance(res, BaseException):
                raise res
        return JudgeResponse(results=list(results))  # type: ignore[arg-type]

    def judge(self, req: JudgeRequest) -> JudgeResponse:
        """Blocking :meth:`ajudge` (runs it on the background loop, see :mod:`sandbox.service.loop`)."""
        return run_sync(self.ajudge(req))

    # ------------------------------------------------------------------ run
    def _run_blocking(self, req: RunRequest, admitted_at: float) -> RunResponse:
        from sandbox.core.spec import TestSpec

        with self._lock:
            self._pending -= 1
        judge = self._make_judge(req.limits.overrides() if req.limits else {})
        job = judge.build_job(req.source, TestSpec(kind="stdio"), req.language)
        job = dataclasses.replace(job, tests=(TestInput(stdin=req.stdin),))
        try:
            with self.metrics.job(admitted_at):
                outcome = judge.backend.execute(job)
        except SandboxError as exc:
            raise ServiceError(f"isolation backend failed: {exc}") from exc
        if outcome.status is OutcomeStatus.ERROR:
            raise ServiceError(f"runner failed: {outcome.error}")
        wire = outcome.to_wire()  # the HTTP edge shows the runner's records as they are
        return RunResponse(status=wire["status"], test=wire["tests"][0] if wire["tests"] else None,
                           compile=wire["compile"], runner=wire["runner"])

    async def arun(self, req: RunRequest) -> RunResponse:
        """Run one raw program on one stdin.

        Args:
            req: the parsed request.

        Returns:
            What the program did.

        Raises:
            RequestTooLarge: source over the size limit.
            InvalidRequest: a bad limit or language.
            Overloaded: too many submissions waiting.
            ServiceError: the sandbox failed.

        """
        check_run_size(req, self.limits)
        self._admit(1)
        return await asyncio.get_running_loop().run_in_executor(self._judge_pool, self._run_blocking, req,
                                                                time.perf_counter())

    def run(self, req: RunRequest) -> RunResponse:
        """Blocking :meth:`arun`."""
        return run_sync(self.arun(req))

    # ------------------------------------------------------------------ math
    def _math_blocking(self, req: MathCheckRequest) -> MathCheckResponse:
        items = [it.to_core() for it in req.all_items()]
        try:
            verdicts = self.math_checker.check_batch(items)
        except (MathCheckError, OSError) as exc:  # pool closed, workers could not start: the core failed
            raise ServiceError(f"math checker failed: {type(exc).__name__}: {exc}") from exc
        return MathCheckResponse(results=[v.to_dict() for v in verdicts])

    async def acheck_math(self, req: MathCheckRequest) -> MathCheckResponse:
        """Check every item of ``req``.

        Args:
            req: the parsed request.

        Returns:
            One math verdict dict per item, in order.

        Raises:
            RequestTooLarge: over a size limit.
            ServiceError: the math checker failed.

        """
        check_math_size(req, self.limits)
        return await asyncio.get_running_loop().run_in_executor(self._math_pool, self._math_blocking, req)

    def check_math(self, req: MathCheckRequest) -> MathCheckResponse:
        """Blocking :meth:`acheck_math`."""
        return run_sync(self.acheck_math(req))

    # ------------------------------------------------------------------ health
    def health(self) -> dict[str, Any]:
        """Backend health and a live math check (``ok`` is True only if both work).

        Returns:
            ``{"ok": bool, "isolation": {...}, "math": {"ok": bool, ...}, "pending": int}``.

        """
        try:
            iso = dict(self.backend.health())
        except (ServiceError, SandboxError, OSError) as exc:  # unavailable backend: reported, not raised
            iso = {"backend": self.config.isolation, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        try:
            verdict = self.math_checker.check_answer("1/2", "0.5")
            math = {"ok": verdict.correct, "probe": verdict.status.wire_name, "reason": verdict.reason}
        except (ServiceError, MathCheckError, OSError) as exc:
            math = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        ok = bool(iso.get("ok")) and bool(math.get("ok"))
        return {"ok": ok, "isolation": iso, "math": math, "pending": self._pending}

    def close(self) -> None:
        """Stop the thread pools, the backend and the math workers. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._judge_pool.shutdown(wait=True, cancel_futures=True)
        self._math_pool.shutdown(wait=True, cancel_futures=True)
        if self._backend is not None:
            self._backend.close()
        if self._math is not None:
            self._math.close()

    def __enter__(self) -> "SandboxService":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
