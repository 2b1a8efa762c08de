"""Load generators against a reward-service URL (loopback tests and benchmarks): saturation and soak.

- :func:`measure_saturation`: closed loop, ``concurrency`` clients judging back to back for
  ``duration_s``: the completed submissions per second is the service's saturation throughput.
- :func:`soak`: open loop at a fixed arrival rate (e.g. 4x saturation) for ``duration_s``. Every
  request must be *answered*: 200 with the right verdict, or 503 (shed under overload, which
  :class:`sandbox.service.client.SandboxClient` retries after ``Retry-After``). Anything else
  (500, a timeout, a dropped connection, a wrong verdict) counts against the run. Like a real
  client, the generator keeps at most ``max_outstanding`` requests in flight: an arrival that
  finds the bound reached is not sent and is counted as ``not_sent`` (what the service could not
  even take in, e.g. a proxy starved of CPU). The RSS of the processes ``rss_pids()`` names is
  sampled over time.

Each request is one submission with its own expected outputs; one in ten is a wrong program
(expected WA), so a mixed-up or wrong verdict is seen either way.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

__all__ = ["SoakReport", "measure_saturation", "soak", "submission", "percentile", "rss_mb"]

GOOD = "print(sum(map(int, input().split())))"
WRONG = "print(sum(map(int, input().split())) + 1)"


def submission(i: int, n_tests: int = 5) -> tuple[dict[str, Any], str]:
    """Request body number ``i`` and its expected verdict (every tenth is a wrong program)."""
    cases = [{"input": f"{i} {j} {j * j}", "output": f"{i + j + j * j}"} for j in range(n_tests)]
    wrong = i % 10 == 9
    return {"code": WRONG if wrong else GOOD, "tests": {"kind": "stdio", "cases": cases}}, "WA" if wrong else "AC"


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def rss_mb(pid: int) -> float | None:
    """Resident set size of ``pid`` in MiB (None if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def _one(http: Any, url: str, i: int) -> tuple[str, float, str | None]:
    """``(outcome, latency_s, detail)``; outcome is ok / shed / wrong / lost."""
    body, want = submission(i)
    start = time.monotonic()
    try:
        resp = await http.post(f"{url}/judge", json=body)
    except Exception as exc:  # noqa: BLE001 - every transport failure is a lost request here
        return "lost", time.monotonic() - start, f"{type(exc).__name__}: {exc}"
    took = time.monotonic() - start
    if resp.status_code == 503:
        return "shed", took, resp.headers.get("retry-after")
    if resp.status_code != 200:
        return "lost", took, f"HTTP {resp.status_code}: {resp.text[:200]}"
    got = resp.json()["results"][0]["verdict"]
    return ("ok" if got == want else "wrong"), took, None if got == want else f"#{i}: {got} != {want}"


async def _closed_loop(url: str, concurrency: int, duration_s: float) -> tuple[int, list[float]]:
    import httpx

    done, latencies = [0], []
    end = time.monotonic() + duration_s
    counter = iter(range(10**9))

    async def worker(http: Any) -> None:
        while time.monotonic() < end:
            outcome, took, _ = await _one(http, url, next(counter))
            if outcome == "ok":
                done[0] += 1
                latencies.append(took)

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=concurrency)) as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    return done[0], latencies


def measure_saturation(url: str, *, concurrency: int = 16, duration_s: float = 10.0) -> dict[str, Any]:
    """Closed-loop throughput and latency (see the module docstring).

    Returns:
        ``{"throughput_per_s", "p50_s", "p99_s", "completed", "concurrency", "duration_s"}``.

    """
    start = time.monotonic()
    done, latencies = asyncio.run(_closed_loop(url, concurrency, duration_s))
    wall = time.monotonic() - start
    return {"throughput_per_s": round(done / wall, 2), "p50_s": percentile(latencies, 0.5),
            "p99_s": percentile(latencies, 0.99), "completed": done, "concurrency": concurrency,
            "duration_s": round(wall, 1)}


@dataclass
class SoakReport:
    """What an open-loop soak gave (counts of requests; latencies of the judged ones)."""

    rate_per_s: float
    duration_s: float
    offered: int = 0
    sent: int = 0
    not_sent: int = 0
    ok: int = 0
    shed_503: int = 0
    shed_with_retry_after: int = 0
    wrong: int = 0
    lost: int = 0
    judged_per_s: float = 0.0
    p50_s: float | None = None
    p99_s: float | None = None
    problems: list[str] = field(default_factory=list)
    rss_mb: list[dict[str, Any]] = field(default_factory=list)

    @property
    def answered(self) -> int:
        """Requests answered 200 (right or wrong) or 503."""
        return self.ok + self.wrong + self.shed_503

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {**asdict(self), "answered": self.answered}


async def _soak(url: str, rate: float, duration_s: float, rss_pids: Callable[[], dict[str, int]],
                samples: int, max_outstanding: int) -> SoakReport:
    import httpx

    report = SoakReport(rate_per_s=rate, duration_s=duration_s)
    latencies: list[float] = []
    tasks: set[asyncio.Task] = set()
    start = time.monotonic()

    def record(task: asyncio.Task) -> None:
        tasks.discard(task)
        outcome, took, detail = task.result()
        if outcome == "ok":
            report.ok += 1
            latencies.append(took)
        elif outcome == "shed":
            report.shed_503 += 1
            report.shed_with_retry_after += detail is not None
        else:
            setattr(report, outcome, getattr(report, outcome) + 1)
            if len(report.problems) < 20:
                report.problems.append(f"{outcome}: {detail}")

    def sample() -> None:
        row: dict[str, float | None] = {"t_s": round(time.monotonic() - start, 1)}
        row.update({name: rss_mb(pid) for name, pid in rss_pids().items()})
        report.rss_mb.append(row)

    limits = httpx.Limits(max_connections=max_outstanding, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        next_sample, i = start, 0
        while (now := time.monotonic()) < start + duration_s:
            if now >= next_sample:
                sample()
                next_sample += duration_s / max(1, samples - 1)
            due = int((now - start) * rate) + 1
            while i < due:
                if len(tasks) >= max_outstanding:  # the service is not even taking requests in
                    report.not_sent += 1
                else:
                    task = asyncio.ensure_future(_one(http, url, i))
                    task.add_done_callback(record)
                    tasks.add(task)
                i += 1
            await asyncio.sleep(min(0.01, 1 / rate))
        report.offered, report.sent = i, i - report.not_sent
        if tasks:
            await asyncio.wait(set(tasks), timeout=180)
        sample()
    elapsed = time.monotonic() - start
    report.judged_per_s = round((report.ok + report.wrong) / elapsed, 2)
    report.p50_s, report.p99_s = percentile(latencies, 0.5), percentile(latencies, 0.99)
    report.lost += sum(1 for t in tasks if not t.done())
    return report


def soak(url: str, *, rate_per_s: float, duration_s: float, rss_pids: Callable[[], dict[str, int]] = dict,
         samples: int = 12, max_outstanding: int = 256) -> SoakReport:
    """Open-loop soak (see the module docstring).

    Args:
        url: the service's base URL.
        rate_per_s: request arrivals per second.
        duration_s: how long requests are sent (then the outstanding ones are awaited, 180 s at most).
        rss_pids: returns ``{name: pid}`` of processes whose RSS to sample.
        samples: RSS samples over the run.
        max_outstanding: client-side bound on requests in flight (arrivals beyond it: ``not_sent``).

    Returns:
        The :class:`SoakReport`.

    """
    if rate_per_s <= 0 or duration_s <= 0:
        raise ValueError(f"rate_per_s={rate_per_s} and duration_s={duration_s} must be > 0")
    return asyncio.run(_soak(url, rate_per_s, duration_s, rss_pids, samples, max_outstanding))
