"""Per-test cost of the runner's execution paths for a trivial program, side by side.

Usage: PYTHONPATH=. .venv/bin/python benchmarks/bench_runner.py [--runs 100]

Rows: a bare ``python3 -c pass`` subprocess (the fresh-interpreter floor), the runner's
``exec`` path (fresh interpreter per test, isolated), its ``fork`` path (zygote: pre-imported
interpreter forked per test), ``fork`` with ``share_process`` (the job's tests run one after
another in one forked child), ``fork`` + a PID namespace per test, and the ``process``
backend judging one-test jobs through 2 warm workers (pipe round trip included).

Besides wall time it reports CPU milliseconds per run summed over the whole process tree
(runner, zygote, workers, programs), which a loaded machine distorts far less; "idle est."
is cores x 1000 / CPU ms, the throughput an otherwise idle machine of this size could reach.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

from sandbox.runner.job import _world_executable, run_job


def tree_cpu_s() -> float:
    """CPU seconds used by this process and all its descendants, live or reaped."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(pid)] = (int(fields[1]), sum(int(x) for x in fields[11:15]) / tick)  # ppid, u+s+cu+cs
    mine, total, frontier = {os.getpid()}, 0.0, [os.getpid()]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _) in stats.items():
            if ppid == parent and pid not in mine:
                mine.add(pid)
                frontier.append(pid)
    for pid in mine - {os.getpid()}:
        total += stats[pid][1]
    self_ru, child_ru = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return total + self_ru.ru_utime + self_ru.ru_stime + child_ru.ru_utime + child_ru.ru_stime


def per_run_ms(fn, runs: int) -> tuple[float, float]:
    """(wall ms per run, CPU ms per run summed over the whole process tree)."""
    fn()  # warm-up (starts the zygote / workers)
    cpu0, start = tree_cpu_s(), time.perf_counter()
    fn(runs)
    wall, cpu = time.perf_counter() - start, tree_cpu_s() - cpu0
    return wall / runs * 1000, cpu / runs * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    runs = parser.parse_args().runs
    python = next(p for p in (sys.executable, "/usr/bin/python3") if p)

    def bare(n=1):
        for _ in range(n):
            subprocess.run([python, "-c", "pass"], check=True)

    def runner(mode, pidns=False, share=False):
        def go(n=1):
            out = run_job({"source": "print(1)", "tests": [{"stdin": ""}] * n, "python_mode": mode,
                           "pid_namespace": pidns, "share_process": share})
            assert all(t["status"] == "OK" for t in out["tests"]), out
        return go

    from sandbox.core.judge import Judge, JudgeConfig, Submission
    from sandbox.isolation import get_backend

    backend = get_backend("process", workers=2)
    judge = Judge(JudgeConfig(max_concurrency=2), backend)
    spec = {"kind": "stdio", "cases": [{"input": "", "output": "1"}]}

    def backend_jobs(n=1):
        results = judge.judge_batch([Submission(spec=spec, code="print(1)")] * n)
        assert all(r.reward == 1.0 for r in results)

    rows = [("python3 -c pass (subprocess)", bare)]
    if any(_world_executable(p) for p in ("/usr/local/bin/python3", "/usr/bin/python3")):
        rows.append(("runner exec path (fresh interpreter)", runner("exec")))
    rows += [("runner fork path (zygote)", runner("fork")),
             ("runner fork path, share_process (1 job)", runner("fork", share=True)),
             ("runner fork path + PID namespace", runner("fork", True)),
             ("process backend, 2 workers, 1-test jobs", backend_jobs)]
    results = [(name, per_run_ms(fn, runs)) for name, fn in rows]
    backend.close()
    base = results[0][1][1]
    cores = os.cpu_count() or 1
    print(f"load average before: {os.getloadavg()[0]:.1f}; {cores} cores")
    print(f"{'path':42s} {'wall ms':>8s} {'runs/s':>7s} {'CPU ms':>7s} {'CPU vs bare':>11s} {'idle est. runs/s':>16s}")
    for name, (wall_ms, cpu_ms) in results:
        print(f"{name:42s} {wall_ms:8.2f} {1000 / wall_ms:7.0f} {cpu_ms:7.2f} {base / cpu_ms:10.2f}x "
              f"{cores * 1000 / cpu_ms:16.0f}")


if __name__ == "__main__":
    main()
