"""One pool of owned, replaceable workers: what the process, docker and math backends share (stdlib only).

A :class:`WorkerPool` keeps ``size`` workers, each in a numbered slot (the process backend
gives slot ``i`` the sandbox uid ``base_uid + i``, so a replacement keeps its slot's uid).
Callers :meth:`~WorkerPool.acquire` an idle worker (blocking while all are busy) and
:meth:`~WorkerPool.release` it: healthy, it goes back to the idle list; broken (it died, timed
out, answered garbage) or worn out, it is *retired*: stopped, and a fresh worker is started
in its slot. Starting and stopping run in background threads when the pool was built with
``background=True`` (containers take a second to start), else in the caller's thread.
A worker that :meth:`acquire` finds dead (``alive`` is false) is replaced before it is
handed out. :meth:`close` stops every worker; later :meth:`acquire` calls raise.

What is *not* here: what a worker is and how a job is sent to it (each backend's own
``_Worker``), and workers the pool does not own (the socket backend only dispatches to
compose workers it discovers; it starts and stops none).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["WorkerPool", "PoolStats"]

W = TypeVar("W")


@dataclass
class PoolStats:
    """Counters of a pool (read under the pool's lock, see :meth:`WorkerPool.snapshot`)."""

    replaced: int = 0  # workers retired and started again (broken or worn out)
    start_failures: int = 0
    last_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # the backend's own counters


class WorkerPool(Generic[W]):
    """``size`` workers in numbered slots; see the module docstring.

    Args:
        size: number of slots (>= 1).
        start: ``start(slot) -> worker``; may raise (the failure is counted and the slot stays empty).
        stop: ``stop(worker)``; must not raise for a dead worker.
        alive: ``alive(worker) -> bool``, checked when a worker is handed out (default: always alive).
        background: start and stop workers in daemon threads (the caller never waits for them).
        closed_error: builds the exception :meth:`acquire` raises once the pool is closed.
        empty_error: builds the exception :meth:`acquire` raises when no worker is live and none is
            starting (every start failed); it gets the last start error.
        start_errors: the exception types a failed ``start`` may raise (others are bugs and propagate).

    Raises:
        ValueError: ``size`` < 1.

    """

    def __init__(self, size: int, start: Callable[[int], W], stop: Callable[[W], None], *,
                 alive: Callable[[W], bool] | None = None, background: bool = False,
                 closed_error: Callable[[], Exception] = lambda: RuntimeError("the worker pool is closed"),
                 empty_error: Callable[[str | None], Exception] | None = None,
                 start_errors: tuple[type[BaseException], ...] = (OSError,)) -> None:
        if size < 1:
            raise ValueError(f"pool size must be >= 1, got {size!r}")
        self.size = size
        self._start_fn, self._stop_fn = start, stop
        self._alive = alive or (lambda worker: True)
        self._background = background
        self._closed_error = closed_error
        self._empty_error = empty_error or (lambda why: RuntimeError(f"no worker could be started: {why}"))
        self._start_errors = start_errors
        self._cond = threading.Condition()
        self._idle: deque[int] = deque()  # slots whose worker is idle, oldest first (every worker gets used)
        self._workers: dict[int, W] = {}  # slot -> live worker (idle or busy)
        self._starting: set[int] = set()
        self._closed = False
        self.stats = PoolStats()

    # ------------------------------------------------------------------ starting and stopping
    def fill(self, wait: bool = True) -> None:
        """Start a worker in every empty slot (``wait``: until each started or failed)."""
        with self._cond:
            empty = [s for s in range(self.size) if s not in self._workers and s not in self._starting]
            self._starting.update(empty)
        threads = [self._spawn(slot) for slot in empty]
        if wait:
            for t in threads:
                if t is not None:
                    t.join()

    def _spawn(self, slot: int) -> threading.Thread | None:
        if not self._background:
            self._start(slot)
            return None
        t = threading.Thread(target=self._start, args=(slot,), daemon=True, name="er-pool-start")
        t.start()
        return t

    def _start(self, slot: int) -> None:
        worker, error = None, None
        try:
            worker = self._start_fn(slot)
        except self._start_errors as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            with self._cond:
                self._starting.discard(slot)
                closed = self._closed
                if worker is not None and not closed:
                    self._workers[slot] = worker
                    self._idle.append(slot)
                elif worker is None:
                    self.stats.start_failures += 1
                    self.stats.last_error = error
                self._cond.notify_all()
        if worker is not None and closed:
            self._stop_fn(worker)  # closed while it started: never handed out

    def _stop(self, worker: W) -> None:
        if self._background:
            threading.Thread(target=self._stop_fn, args=(worker,), daemon=True, name="er-pool-stop").start()
        else:
            self._stop_fn(worker)

    # ------------------------------------------------------------------ leasing
    def acquire(self) -> tuple[int, W]:
        """Take an idle worker, blocking while all are busy.

        Returns:
            ``(slot, worker)``; give it back with :meth:`release`.

        Raises:
            Exception: ``closed_error()`` once closed; ``empty_error(last start error)`` when no worker
                is live and none is starting.

        """
        while True:
            with self._cond:
                while not self._idle:
                    if self._closed:
                        raise self._closed_error()
                    if not self._workers and not self._starting:
                        raise self._empty_error(self.stats.last_error)
                    self._cond.wait(0.5)
                if self._closed:
                    raise self._closed_error()
                slot = self._idle.popleft()
                worker = self._workers[slot]
            if self._alive(worker):
                return slot, worker
            self.release(slot, worker, healthy=False)  # died while idle: replace it, try another

    def release(self, slot: int, worker: W, healthy: bool = True, reason: str | None = None) -> None:
        """Give ``worker`` back: healthy to the idle list, else retire it and start a fresh one in its slot.

        Args:
            slot: the slot :meth:`acquire` returned.
            worker: the worker.
            healthy: False when it broke or wore out.
            reason: why it was retired (kept as ``stats.last_error``).

        """
        with self._cond:
            owned = self._workers.get(slot) is worker  # False once close() took (and stopped) it
            if healthy and owned and not self._closed:
                self._idle.append(slot)
                self._cond.notify()
                return
            if owned:
                del self._workers[slot]
            restart = owned and not self._closed
            if restart:
                self.stats.replaced += 1
                if reason:
                    self.stats.last_error = reason
                self._starting.add(slot)
        if owned:
            self._stop(worker)
        if restart:
            self._spawn(slot)

    @contextmanager
    def lease(self) -> Iterator[W]:
        """``with pool.lease() as worker``: released healthy on success, retired if the block raised."""
        slot, worker = self.acquire()
        healthy = False
        try:
            yield worker
            healthy = True
        finally:
            self.release(slot, worker, healthy)

    # ------------------------------------------------------------------ state
    def snapshot(self) -> dict[str, Any]:
        """``{"live", "idle", "starting", "replaced", "start_failures", "last_error", **extra}``."""
        with self._cond:
            return {"live": len(self._workers), "idle": len(self._idle), "starting": len(self._starting),
                    "replaced": self.stats.replaced, "start_failures": self.stats.start_failures,
                    "last_error": self.stats.last_error, **self.stats.extra}

    def count(self, key: str, error: str | None = None) -> None:
        """Add one to the backend counter ``stats.extra[key]`` (and record ``error``)."""
        with self._cond:
            self.stats.extra[key] = self.stats.extra.get(key, 0) + 1
            if error is not None:
                self.stats.last_error = error

    def workers(self) -> list[W]:
        """The live workers (idle and busy)."""
        with self._cond:
            return list(self._workers.values())

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Stop every live worker (busy ones too); later :meth:`acquire` calls raise. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            workers = list(self._workers.values())
            self._workers.clear()
            self._idle.clear()
            self._cond.notify_all()
        if not self._background:
            for worker in workers:
                self._stop_fn(worker)
            return
        threads = [threading.Thread(target=self._stop_fn, args=(w,), daemon=True, name="er-pool-stop") for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
