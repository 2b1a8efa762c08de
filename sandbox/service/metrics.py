"""Prometheus collectors of one reward service: queue, in-flight jobs, stage latency, worker restarts.

:class:`ServiceMetrics` owns a registry of its own (several services can live in one
process, as in tests) and is filled by :class:`sandbox.service.service.SandboxService`; the HTTP
app (:mod:`sandbox.service.server`) adds its request counters to the same registry and serves it
on ``GET /metrics``.

Series (every one carries ``worker``, the service instance: ``$ER_SANDBOX_WORKER_ID`` or
``host:pid``; behind Ray Serve each replica is one worker):

==========================================  ===========================================================
``er_sandbox_queue_depth``                  submissions admitted and waiting for a judge thread
``er_sandbox_jobs_in_flight``               submissions (and ``/run`` programs) being judged now
``er_sandbox_stage_latency_seconds``        histogram by ``stage``: ``queue`` (admitted -> judge thread),
                                            ``run`` (isolation backend round trip: the program's run plus
                                            transport), ``compare`` (extraction, output comparison, result
                                            building: the judge's time outside the backend)
``er_sandbox_worker_restarts_total``        sandbox workers replaced after dying or hanging (by ``backend``)
``er_sandbox_worker_job_retries_total``     jobs re-sent to another worker after their worker died
==========================================  ===========================================================

Verdict counts by kind are the server's ``er_sandbox_verdicts_total{endpoint, verdict}``.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any, Callable, Iterable

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

__all__ = ["ServiceMetrics", "TimedBackend", "worker_id", "STAGES"]

STAGES = ("queue", "run", "compare")
_BUCKETS_S = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300)

#: backend name -> (restart counter, retry counter) readers; absent backends report nothing
_COUNTERS: dict[str, tuple[Callable[[Any], int], Callable[[Any], int]]] = {
    "process": (lambda b: b.worker_restarts, lambda b: getattr(b, "job_retries", 0)),
    "docker": (lambda b: b.stats["recycled"], lambda b: b.stats["retried"]),
    "socket": (lambda b: b.stats["hangups"], lambda b: b.stats["retried"]),
}


def worker_id() -> str:
    """This service instance's label: ``$ER_SANDBOX_WORKER_ID``, else ``hostname:pid``."""
    return os.environ.get("ER_SANDBOX_WORKER_ID") or f"{socket.gethostname()}:{os.getpid()}"


class _BackendCounters(Collector):
    """Reads the backend's own restart/retry counters at scrape time (no bookkeeping twice)."""

    def __init__(self, backend: Callable[[], Any], worker: str) -> None:
        self._backend, self._worker = backend, worker

    def collect(self) -> Iterable[CounterMetricFamily]:
        restarts = CounterMetricFamily("er_sandbox_worker_restarts", "Sandbox workers replaced after dying or "
                                       "hanging.", labels=["worker", "backend"])
        retries = CounterMetricFamily("er_sandbox_worker_job_retries", "Jobs re-sent to another sandbox worker "
                                      "after theirs died.", labels=["worker", "backend"])
        backend = self._backend()
        readers = _COUNTERS.get(getattr(backend, "name", ""))
        if backend is not None and readers is not None:
            try:
                restarts.add_metric([self._worker, backend.name], float(readers[0](backend)))
                retries.add_metric([self._worker, backend.name], float(readers[1](backend)))
            except (AttributeError, KeyError, TypeError):  # a backend without those counters: report none
                pass
        yield restarts
        yield retries


class ServiceMetrics:
    """The service's collectors in their own registry.

    Args:
        backend: returns the service's isolation backend, or None while it is not built yet.
        queue_depth: returns the number of admitted submissions waiting for a judge thread.
        worker: the ``worker`` label (default :func:`worker_id`).

    Attributes:
        registry: the :class:`~prometheus_client.CollectorRegistry` to serve.
        worker: the label value.

    """

    def __init__(self, backend: Callable[[], Any], queue_depth: Callable[[], int], worker: str | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.worker = worker or worker_id()
        self._lock = threading.Lock()
        self._running = 0
        self._local = threading.local()
        Gauge("er_sandbox_queue_depth", "Submissions admitted and waiting for a judge thread.", ["worker"],
              registry=self.registry).labels(self.worker).set_function(queue_depth)
        Gauge("er_sandbox_jobs_in_flight", "Submissions and /run programs being judged now.", ["worker"],
              registry=self.registry).labels(self.worker).set_function(lambda: self._running)
        self._stage = Histogram("er_sandbox_stage_latency_seconds", "Per-stage latency of one submission: queue, "
                                "run (isolation backend), compare (judge outside the backend).", ["worker", "stage"],
                                buckets=_BUCKETS_S, registry=self.registry)
        self.registry.register(_BackendCounters(backend, self.worker))

    @property
    def in_flight(self) -> int:
        """Submissions being judged now."""
        return self._running

    def observe(self, stage: str, seconds: float) -> None:
        """Record ``seconds`` spent in ``stage`` (one of :data:`STAGES`)."""
        self._stage.labels(self.worker, stage).observe(max(0.0, seconds))

    def job(self, admitted_at: float) -> "_JobTimer":
        """Context manager around judging one submission that was admitted at ``admitted_at``.

        Records the queue stage on entry; on exit records ``compare`` as the time not spent
        in the backend (the backend's share is recorded by :class:`TimedBackend`).
        """
        return _JobTimer(self, admitted_at)

    def stage_count(self, stage: str) -> float:
        """How many observations ``stage`` has (for tests)."""
        return self.registry.get_sample_value("er_sandbox_stage_latency_seconds_count",
                                              {"worker": self.worker, "stage": stage}) or 0.0


class _JobTimer:
    def __init__(self, metrics: ServiceMetrics, admitted_at: float) -> None:
        self.metrics, self.admitted_at = metrics, admitted_at

    def __enter__(self) -> "_JobTimer":
        m = self.metrics
        self.start = time.perf_counter()
        m.observe("queue", self.start - self.admitted_at)
        m._local.run_s = 0.0
        with m._lock:
            m._running += 1
        return self

    def __exit__(self, *exc: object) -> None:
        m = self.metrics
        with m._lock:
            m._running -= 1
        total = time.perf_counter() - self.start
        m.observe("compare", total - getattr(m._local, "run_s", 0.0))


class TimedBackend:
    """An isolation backend seen through a stopwatch: ``execute`` time goes to the ``run`` stage.

    Every other attribute is the wrapped backend's (``name``, ``health``, ``config`` ...).

    Args:
        backend: the isolation backend.
        metrics: where to record.

    """

    def __init__(self, backend: Any, metrics: ServiceMetrics) -> None:
        self._backend, self._metrics = backend, metrics

    def execute(self, job: dict[str, Any]) -> dict[str, Any]:
        """Run ``job`` on the wrapped backend, recording its duration."""
        start = time.perf_counter()
        try:
            return self._backend.execute(job)
        finally:
            spent = time.perf_counter() - start
            self._metrics.observe("run", spent)
            local = self._metrics._local
            local.run_s = getattr(local, "run_s", 0.0) + spent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)
