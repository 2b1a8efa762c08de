"""Reward-service latency and math throughput: HTTP service vs in-process, side by side.

Measures, in one run:

1. Latency (p50/p99) of judging one 20-test stdio submission under 1, 4 and 16
   concurrent clients, through a real local server (``uvicorn``, 127.0.0.1) and through
   the in-process client (same service code, no HTTP), for each isolation backend
   asked for (``process``; ``docker`` when its worker image is present).
2. Math checks per second: ``/math/check`` batches through the server vs
   ``MathChecker.check_batch`` in-process, same worker count.

Prints a table with the HTTP / in-process ratios and, with ``--write``, replaces the
``## Reward service`` section of ``benchmarks/RESULTS.md``.

Usage::

    python benchmarks/bench_service.py                     # process isolation
    python benchmarks/bench_service.py --isolation process,docker --write
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sandbox.service.client import SandboxClient  # noqa: E402
from sandbox.service.local_server import LocalServer  # noqa: E402
from sandbox.service.service import ServiceConfig  # noqa: E402

SECTION = "## Reward service"


def submission(n_tests: int) -> dict[str, Any]:
    """A correct program on ``n_tests`` stdio tests (sum of a line of integers)."""
    cases = [{"input": " ".join(str(j) for j in range(i + 1)) + "\n", "output": f"{i * (i + 1) // 2}\n"}
             for i in range(n_tests)]
    return {"code": "print(sum(map(int, input().split())))", "tests": {"kind": "stdio", "cases": cases}}


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def load(client: SandboxClient, sub: dict, concurrency: int, total: int) -> tuple[list[float], float]:
    """``concurrency`` clients send ``total`` single-submission requests; returns latencies and wall time."""
    latencies: list[float] = []
    remaining = [total]

    async def worker() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            start = time.perf_counter()
            result = await client.ajudge(sub)
            latencies.append(time.perf_counter() - start)
            if result.verdict.name != "AC":
                raise RuntimeError(f"benchmark submission not AC: {result.verdict.name} {result.error}")

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - start


def latency_rows(isolation: str, levels: list[int], per_level: int, n_tests: int, workers: int) -> list[dict]:
    """Latency stats for HTTP and in-process at each concurrency level (the two modes interleaved)."""
    sub = submission(n_tests)
    if isolation == "process":  # separate uid ranges: each process backend sweeps its own uids
        options, local_options = {"workers": workers, "base_uid": 64000}, {"workers": workers, "base_uid": 64100}
    else:
        options = local_options = {"pool_size": workers}
    config = ServiceConfig(isolation=isolation, isolation_options=local_options, judge_workers=workers,
                           math_workers=1)
    rows = []
    with LocalServer(isolation=isolation, isolation_options=options, judge_workers=workers, math_workers=1,
                     startup_timeout_s=180) as server, \
            SandboxClient(server.url, max_concurrency=max(levels)) as http, \
            SandboxClient(None, service_config=config, max_concurrency=max(levels)) as local:
        for client in (http, local):  # warm-up
            asyncio.run(load(client, sub, 2, 4))
        for c in levels:
            for mode, client in (("http", http), ("in-process", local)):
                lat, wall = asyncio.run(load(client, sub, c, max(per_level, 2 * c)))
                rows.append({"isolation": isolation, "mode": mode, "clients": c, "n": len(lat), "lat": lat,
                             "wall": wall})
    return rows


def math_items(n: int) -> list[dict[str, Any]]:
    """``n`` math checks: a mix of equivalent forms, wrong answers and multi-part answers."""
    forms = [("\\frac{1}{2}", "0.5"), ("2\\sqrt{2}", "\\sqrt{8}"), ("5050", "5051"), ("x^2+2x+1", "(x+1)^2"),
             ("\\pi/2", "90^\\circ"), ("[3, 4]", "4, 3")]
    items = []
    for i in range(n):
        gold, pred = forms[i % len(forms)]
        require = "all" if gold.startswith("[") else "any"
        gold_value: Any = ["3", "4"] if require == "all" else gold
        items.append({"gold": gold_value, "completion": f"step {i}</think> \\boxed{{{pred}}}", "require": require})
    return items


def single(call: Any, n: int = 100) -> dict[str, Any]:
    """``n`` sequential calls: count, wall time and per-call latencies (the fixed cost of one request)."""
    lat = []
    start = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        call()
        lat.append(time.perf_counter() - t)
    return {"n": n, "wall": time.perf_counter() - start, "lat": lat}


def math_rows(n_items: int, workers: int, batch: int) -> list[dict]:
    """Math checks/s through the server vs the checker in-process."""
    from sandbox.mathcheck import MathChecker, MathItem

    items = math_items(n_items)
    rows = []
    with LocalServer(math_workers=workers, judge_workers=1, isolation_options={"workers": 1, "base_uid": 64200},
                     startup_timeout_s=180) as server:
        with SandboxClient(server.url, math_batch_size=batch, max_concurrency=4) as http:
            http.check_math_batch(items[:8])  # warm-up
            start = time.perf_counter()
            http_verdicts = http.check_math_batch(items)
            rows.append({"mode": f"http (batches of {batch})", "n": n_items, "wall": time.perf_counter() - start})
            rows.append({"mode": "http, one check per request", **single(lambda: http.check_math("1/2", pred="0.5"))})
    with MathChecker(timeout_s=2.0, workers=workers) as checker:
        checker.wait_ready()
        todo = [MathItem(gold=i["gold"], completion=i["completion"], require=i["require"]) for i in items]
        checker.check_batch(todo[:8])
        start = time.perf_counter()
        local_verdicts = checker.check_batch(todo)
        rows.append({"mode": "in-process MathChecker", "n": n_items, "wall": time.perf_counter() - start})
        rows.append({"mode": "in-process, one check per call", **single(lambda: checker.check_answer("1/2", "0.5"))})
    diff = [(i, h.status.name, c.status.name, h.reason or c.reason) for i, (h, c) in
            enumerate(zip(http_verdicts, local_verdicts, strict=True)) if h.status != c.status]
    if diff:
        raise RuntimeError(f"HTTP and in-process math verdicts differ for {len(diff)} item(s): {diff[:5]}")
    return rows


def render(lat_rows: list[dict], m_rows: list[dict], args: argparse.Namespace, skipped: list[str]) -> str:
    """The RESULTS.md section."""
    cpu = (f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}), "
           f"Python {platform.python_version()}")
    lines = [SECTION, "", f"Command: `python benchmarks/bench_service.py {' '.join(sys.argv[1:])}`".rstrip(), "",
             f"Machine: {cpu}; shared with other jobs (load average {args.load:.1f} at start), so absolute "
             "numbers are noisy; HTTP and in-process runs alternate at each level.", "",
             f"Latency of one {args.tests}-test stdio submission (a correct Python program), "
             f"`judge_workers={args.workers}` and {args.workers} isolation workers; each client sends one "
             "request at a time.", "",
             "| isolation | clients | mode | requests | p50 ms | p99 ms | subs/s | p50 http/in-process |",
             "|---|---|---|---|---|---|---|---|"]
    base = {(r["isolation"], r["clients"]): r for r in lat_rows if r["mode"] == "in-process"}
    for r in lat_rows:
        p50 = statistics.median(r["lat"]) * 1000
        ratio = p50 / (statistics.median(base[(r["isolation"], r["clients"])]["lat"]) * 1000)
        lines.append(f"| {r['isolation']} | {r['clients']} | {r['mode']} | {r['n']} | {p50:.0f} | "
                     f"{percentile(r['lat'], 0.99) * 1000:.0f} | {r['n'] / r['wall']:.1f} | {ratio:.2f} |")
    for why in skipped:
        lines.append(f"\nSkipped: {why}")
    lines += ["", f"Math checks/s ({args.math_items} checks, {args.math_workers} checker workers, mixed "
              "equivalent / wrong / multi-part answers):", "",
              "| mode | checks | wall s | checks/s | p50 ms per call | ratio to in-process |",
              "|---|---|---|---|---|---|"]
    local_rate = {("lat" in r): r["n"] / r["wall"] for r in m_rows if r["mode"].startswith("in-process")}
    for r in m_rows:
        rate = r["n"] / r["wall"]
        p50 = f"{statistics.median(r['lat']) * 1000:.1f}" if "lat" in r else "-"
        lines.append(f"| {r['mode']} | {r['n']} | {r['wall']:.2f} | {rate:.0f} | {p50} | "
                     f"{rate / local_rate['lat' in r]:.2f} |")
    return "\n".join(lines + reading(lat_rows, m_rows, args)) + "\n"


def reading(lat_rows: list[dict], m_rows: list[dict], args: argparse.Namespace) -> list[str]:
    """A short interpretation, computed from this run's numbers."""
    p50 = {r["mode"]: statistics.median(r["lat"]) * 1000 for r in m_rows if "lat" in r}
    overhead = p50["http, one check per request"] - p50["in-process, one check per call"]
    ratios = ", ".join(
        f"{r['isolation']} {statistics.median(r['lat']) / statistics.median(b['lat']):.2f}"
        for r in lat_rows for b in lat_rows
        if r["mode"] == "http" and b["mode"] == "in-process" and r["clients"] == b["clients"] == 1
        and r["isolation"] == b["isolation"])
    rates = {r["mode"].split(" ")[0]: r["n"] / r["wall"] for r in m_rows if "lat" not in r}
    batch_ratio = rates["http"] / rates["in-process"]
    judge_ms = min((statistics.median(r["lat"]) * 1000 for r in lat_rows
                    if r["mode"] == "in-process" and r["clients"] == 1), default=float("nan"))
    text = (
        f"Reading: one HTTP round trip (client, uvicorn, pydantic validation, JSON) costs about {overhead:.1f} ms "
        f"over an in-process call; judging a {args.tests}-test submission takes {judge_ms:.0f} ms (p50, one "
        f"client), so at one client the HTTP/in-process p50 ratio is {ratios} (noise on this shared machine is "
        f"larger than the HTTP cost). With {args.workers} sandbox workers, latency at more clients is queueing: "
        f"throughput stays at the workers' rate and p50 grows with the queue. Math: batched HTTP checks run at "
        f"{batch_ratio:.2f}x the rate of one in-process `check_batch` call with the same workers; one check per "
        "request is dominated by the fixed HTTP cost.")
    return ["", text]


def write_section(text: str, path: Path) -> None:
    """Replace (or append) the ``## Reward service`` section of ``path``."""
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    new = pattern.sub(text + "\n", old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    path.write_text(new)


def docker_ready() -> str | None:
    """None when the docker backend can start here, else why not."""
    try:
        from sandbox.isolation import get_backend

        get_backend("docker", pool_size=1).close()
        return None
    except Exception as exc:  # engine, SDK or image missing
        return f"docker isolation unavailable: {type(exc).__name__}: {str(exc)[:200]}"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print (and with ``--write`` store) the results table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--isolation", default="process", help="comma-separated: process,docker")
    parser.add_argument("--levels", default="1,4,16", help="concurrent clients, comma-separated")
    parser.add_argument("--per-level", type=int, default=32, help="requests per level (at least 2 x clients)")
    parser.add_argument("--tests", type=int, default=20, help="tests per submission")
    parser.add_argument("--workers", type=int, default=2, help="judge threads and isolation workers")
    parser.add_argument("--math-items", type=int, default=600, help="math checks per mode")
    parser.add_argument("--math-workers", type=int, default=2, help="math checker worker processes")
    parser.add_argument("--math-batch", type=int, default=50, help="items per /math/check request")
    parser.add_argument("--write", action="store_true", help="write the section into benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    args.load = os.getloadavg()[0]
    levels = [int(x) for x in args.levels.split(",")]
    lat_rows, skipped = [], []
    for isolation in args.isolation.split(","):
        if isolation == "docker" and (why := docker_ready()):
            skipped.append(why)
            continue
        lat_rows += latency_rows(isolation, levels, args.per_level, args.tests, args.workers)
    m_rows = math_rows(args.math_items, args.math_workers, args.math_batch)
    text = render(lat_rows, m_rows, args, skipped)
    print(text)
    if args.write:
        write_section(text, REPO / "benchmarks" / "RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
