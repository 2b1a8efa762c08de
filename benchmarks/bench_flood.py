"""Judging time vs. stdout size: a program that floods its output, judged end to end.

Usage: PYTHONPATH=. .venv/bin/python benchmarks/bench_flood.py [--sizes-mb 1 16 32 63 65] [--backends process docker]

Each row judges one stdio submission ``import sys; sys.stdout.write('A' * N)`` (one test,
expected output ``x``) through :class:`sandbox.core.judge.Judge` and the named isolation
backend with the default limits (64 MiB output limit: sizes up to 63 MB are WA, 65 MB is OLE).
Columns: the judge call's wall time, the program's own wall time as the runner measured it,
and the difference (everything that is not the program: reading its output, sending the
answer across the boundary, decoding, comparing). Issue 11 measured 33 s (process) and 7 s
(docker) for 63 MB before the linear readers; the target for a 64 MB flood is OLE well under
1 s beyond the program's own run time.
"""

from __future__ import annotations

import argparse
import time

from sandbox.core.judge import Judge, JudgeConfig, Submission
from sandbox.isolation import get_backend

MB = 1 << 20


def judge_flood(judge: Judge, size_bytes: int) -> tuple[str, float, float]:
    """``(verdict, judge wall s, program wall s)`` for one flood of ``size_bytes``."""
    code = f"import sys\nsys.stdout.write('A' * {size_bytes})\n"
    spec = {"kind": "stdio", "cases": [{"input": "", "output": "x"}]}
    start = time.perf_counter()
    result = judge.judge(Submission(code=code, spec=spec))
    elapsed = time.perf_counter() - start
    program = result.tests[0].wall_time_s if result.tests else float("nan")
    return result.verdict.name, elapsed, program


def main() -> None:
    """Print one markdown row per (backend, size)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[1, 16, 32, 63, 65])
    parser.add_argument("--backends", nargs="+", default=["process", "docker"])
    parser.add_argument("--repeats", type=int, default=3, help="runs per row (the median is reported)")
    args = parser.parse_args()
    print("| backend | stdout MB | verdict | judge s (median) | program s | judge - program s |")
    print("|---|---:|---|---:|---:|---:|")
    for name in args.backends:
        backend = get_backend(name, **({"pool_size": 1} if name == "docker" else {"workers": 1}))
        try:
            judge = Judge(JudgeConfig(), backend)
            judge_flood(judge, 1)  # warm-up
            for size in args.sizes_mb:
                runs = sorted((judge_flood(judge, size * MB) for _ in range(args.repeats)), key=lambda r: r[1])
                verdict, elapsed, program = runs[len(runs) // 2]
                print(f"| {name} | {size} | {verdict} | {elapsed:.3f} | {program:.3f} | {elapsed - program:.3f} |",
                      flush=True)
        finally:
            backend.close()


if __name__ == "__main__":
    main()
