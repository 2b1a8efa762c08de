"""A pool of killable worker processes with a hard wall-clock limit per task (stdlib only).

Each worker is a process with its own pipe. :meth:`WorkerPool.run` takes an idle
worker, sends it one task (a module-level function and its arguments, pickled by
reference), and waits on the pipe for at most ``timeout_s`` *in the calling process*.
If the deadline passes, the worker is SIGKILLed and replaced; if it dies (segfault,
``os._exit``, OOM kill), the caller gets a ``crashed`` result and the worker is
replaced. Nothing inside the worker has to cooperate, so C-level loops (huge
big-integer powers) and signal-blocking code are stopped too. The pool is thread-safe:
many threads may call :meth:`run` at once; each blocks until a worker is free.

Workers start with the ``forkserver`` method (``spawn`` where unavailable), never
``fork``, so a multi-threaded parent (a web server) is safe. Modules named in
``preload`` are imported once in the fork server, so a replacement worker is ready
in milliseconds. Each worker caps its address space (``RLIMIT_AS``) at
``memory_limit_bytes`` so one pathological task cannot exhaust the host.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Callable, Sequence

from sandbox.core.pool import WorkerPool as CorePool
from sandbox.mathcheck.errors import PoolClosedError

__all__ = ["TaskResult", "WorkerPool"]

_READY = "ready"


@dataclass(frozen=True)
class TaskResult:
    """What happened to one task.

    Attributes:
        kind: ``"ok"`` (``value`` is the return value), ``"error"`` (the function raised;
            ``error`` has the message), ``"timeout"`` (killed at the deadline),
            ``"crashed"`` (the worker died), ``"start_failed"`` (no worker became ready).
        value: the function's return value for ``"ok"``.
        error: a message for every other kind.
        elapsed_s: wall time from sending the task to its end (queueing excluded).

    """

    kind: str
    value: Any = None
    error: str = ""
    elapsed_s: float = 0.0


def _limit_memory(memory_limit_bytes: int | None) -> None:
    if not memory_limit_bytes:
        return
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    except (ImportError, ValueError, OSError):  # not on this platform / not permitted
        pass


def _worker_main(conn: Connection, memory_limit_bytes: int | None, warm_up: str | None) -> None:
    """Serve ``(fn, [args, ...])`` messages until EOF.

    Each message gets one ``("ok"|"error", payload)`` reply per ``args``, in order, sent as
    soon as that call finishes.
    """
    _limit_memory(memory_limit_bytes)
    if warm_up:
        module, _, name = warm_up.partition(":")
        getattr(importlib.import_module(module), name)()
    conn.send((_READY, os.getpid()))
    while True:
        try:
            fn, batch = conn.recv()
        except (EOFError, OSError):
            return
        for args in batch:
            try:
                reply = ("ok", fn(*args))
            except BaseException as exc:  # noqa: BLE001 - report everything to the parent
                reply = ("error", f"{type(exc).__name__}: {exc}"[:1000])
            try:
                conn.send(reply)
            except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable return value
                conn.send(("error", f"cannot send result: {type(exc).__name__}: {exc}"[:1000]))


class _Worker:
    def __init__(self, ctx: Any, memory_limit_bytes: int | None, warm_up: str | None) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker_main, args=(child, memory_limit_bytes, warm_up), daemon=True)
        self.process.start()
        child.close()
        self.ready = False

    def wait_ready(self, timeout_s: float) -> str:
        """Empty string when ready, else why not."""
        if self.ready:
            return ""
        try:
            if self.conn.poll(timeout_s):
                msg = self.conn.recv()
                if isinstance(msg, tuple) and msg and msg[0] == _READY:
                    self.ready = True
                    return ""
                return f"worker sent {msg!r:.100} instead of ready"
            return f"worker not ready after {timeout_s:.0f} s"
        except (EOFError, OSError):
            return f"worker exited during start (exit code {self.process.exitcode})"

    def kill(self) -> None:
        try:
            self.process.kill()
        except (OSError, AttributeError, ValueError):
            pass
        self.process.join(timeout=5)
        self.conn.close()
        try:
            self.process.close()
        except ValueError:  # still running after SIGKILL+5 s: leave it to the OS
            pass


class WorkerPool:
    """``size`` killable worker processes; see the module docstring.

    Args:
        size: number of worker processes (>= 1).
        memory_limit_bytes: address-space cap per worker (``None``: no cap).
        start_timeout_s: how long a (re)started worker may take to become ready.
        preload: modules the fork server imports once, for fast worker starts.
        warm_up: ``"module:function"`` each worker calls before it reports ready.
        start_method: ``"forkserver"`` (default where available) or ``"spawn"``.

    Raises:
        ValueError: ``size`` < 1 or an unknown ``start_method``.

    """

    def __init__(self, size: int, *, memory_limit_bytes: int | None = None, start_timeout_s: float = 120.0,
                 preload: Sequence[str] = (), warm_up: str | None = None, start_method: str | None = None) -> None:
        if size < 1:
            raise ValueError(f"WorkerPool size must be >= 1, got {size!r}")
        methods = multiprocessing.get_all_start_methods()
        method = start_method or ("forkserver" if "forkserver" in methods else "spawn")
        if method not in ("forkserver", "spawn") or method not in methods:
            raise ValueError(f"start_method must be 'forkserver' or 'spawn' (available: {methods}), got {method!r}")
        self._ctx = multiprocessing.get_context(method)
        if method == "forkserver" and preload:
            self._ctx.set_forkserver_preload(list(preload))
        self._memory_limit_bytes = memory_limit_bytes
        self._start_timeout_s = start_timeout_s
        self._warm_up = warm_up
        self.size = size
        # workers start (and are killed and replaced) in background threads; readiness is awaited at first use
        self._pool: CorePool[_Worker] = CorePool(
            size, lambda slot: _Worker(self._ctx, self._memory_limit_bytes, self._warm_up), _Worker.kill,
            background=True, start_errors=(OSError,),
            closed_error=lambda: PoolClosedError("the worker pool is closed; create a new MathChecker"),
            empty_error=lambda why: PoolClosedError(f"no math worker could be started ({why}); create a new "
                                                    "MathChecker"))
        self._pool.fill(wait=True)

    @property
    def replaced(self) -> int:
        """Workers killed (timeout, crash, failed start) and started again."""
        return self._pool.stats.replaced

    def wait_ready(self) -> None:
        """Block until every worker has started (useful before timing anything)."""
        leased = [self._pool.acquire() for _ in range(self.size)]
        try:
            for _, worker in leased:
                worker.wait_ready(self._start_timeout_s)
        finally:
            for slot, worker in leased:
                self._pool.release(slot, worker)

    def run(self, fn: Callable[..., Any], args: tuple = (), *, timeout_s: float) -> TaskResult:
        """Run ``fn(*args)`` in a worker with a hard wall-clock limit.

        Args:
            fn: a module-level (importable) function.
            args: picklable arguments.
            timeout_s: the limit, counted from sending the task.

        Returns:
            The :class:`TaskResult`; never raises for anything the task does.

        Raises:
            PoolClosedError: the pool was closed.

        """
        return self.run_many(fn, [args], timeout_s=timeout_s)[0]

    def run_many(self, fn: Callable[..., Any], batch: Sequence[tuple], *, timeout_s: float) -> list[TaskResult]:
        """Run ``fn(*args)`` for each ``args`` of ``batch``, each call with its own hard limit.

        The batch goes to one worker in one message (fewer round trips than :meth:`run`
        per call); results stream back one by one. When a call times out or kills its
        worker, that call gets its result and the rest of the batch continues on another
        worker.

        Args:
            fn: a module-level (importable) function.
            batch: picklable argument tuples.
            timeout_s: the limit of each call, counted from the end of the previous one.

        Returns:
            One :class:`TaskResult` per ``args``, in order.

        Raises:
            PoolClosedError: the pool was closed.

        """
        results: list[TaskResult] = []
        while len(results) < len(batch):
            results.extend(self._run_on_one_worker(fn, batch[len(results):], timeout_s))
        return results

    def _run_on_one_worker(self, fn: Callable[..., Any], batch: Sequence[tuple], timeout_s: float) -> list[TaskResult]:
        """Run a prefix of ``batch`` on one worker; stops after the first call that breaks it."""
        slot, worker = self._pool.acquire()
        healthy = False
        out: list[TaskResult] = []
        try:
            why = worker.wait_ready(self._start_timeout_s)
            if why:
                return [TaskResult("start_failed", error=why)]
            start = time.perf_counter()
            try:
                worker.conn.send((fn, list(batch)))
                for _ in batch:
                    if not worker.conn.poll(timeout_s):
                        worker.process.kill()  # stop it now; the rest of the clean-up is off the caller's clock
                        out.append(TaskResult("timeout", error=f"killed after {timeout_s:g} s",
                                              elapsed_s=time.perf_counter() - start))
                        return out
                    kind, payload = worker.conn.recv()
                    now = time.perf_counter()
                    ok = kind == "ok"
                    out.append(TaskResult(kind, value=payload if ok else None, error="" if ok else str(payload),
                                          elapsed_s=now - start))
                    start = now
            except (EOFError, OSError):
                worker.process.join(timeout=1.0)
                code = worker.process.exitcode
                how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                out.append(TaskResult("crashed", error=f"worker died ({how})", elapsed_s=time.perf_counter() - start))
                return out
            healthy = True
            return out
        finally:
            self._pool.release(slot, worker, healthy)

    def close(self) -> None:
        """Kill every worker; later :meth:`run` calls raise :class:`PoolClosedError`."""
        self._pool.close()

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
