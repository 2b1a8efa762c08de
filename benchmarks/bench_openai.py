"""OpenAI-server backend benchmark: the cost of generating through HTTP and `er serve`.

Measures, side by side in one run, the same budgeted greedy generation on the tiny
model (CPU), and checks that all variants return the same tokens:

(a) ``HFBackend`` in-process (batched, KV cache carried across phases);
(b) ``OpenAIBackend`` against ``er serve`` (a subprocess on localhost) with
    ``max_concurrency=1``: one HTTP request per sample and phase, in sequence;
(c) the same with ``max_concurrency=8`` (the dev server still decodes one
    sequence at a time, so this shows client-side overlap only).

Run:
    python benchmarks/bench_openai.py                    # print the table
    python benchmarks/bench_openai.py --write-results    # also update benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from er_env.backends.base import SamplingConfig
from er_env.backends.hf import HFBackend
from er_env.backends.openai import OpenAIBackend
from er_env.budget import Budget
from er_tools.tiny_model import build_tiny_model, tiny_prompts

SECTION = "## OpenAI-server backend"
REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prompts", type=int, default=8, help="Prompts per generate call.")
    p.add_argument("--think", type=int, default=24, help="Thinking budget t.")
    p.add_argument("--solution", type=int, default=16, help="Solution budget s.")
    p.add_argument("--repeats", type=int, default=3, help="Timed rounds (after one warm-up round).")
    p.add_argument("--write-results", action="store_true", help="Write the section into benchmarks/RESULTS.md.")
    return p.parse_args(argv)


def start_server(model_dir: Path) -> tuple[subprocess.Popen, str]:
    """`er serve` on a free localhost port; returns the process and its URL once healthy."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "er_cli", "serve", "--model", str(model_dir), "--port", str(port),
           "--served-model-name", "tiny", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("er serve did not start")


def timed(fn, repeats: int) -> tuple[float, list]:
    """Median wall seconds of ``fn`` over ``repeats`` runs after a warm-up, and its last output."""
    fn()  # warm-up
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> str:
    """Run the variants, print the table (and write it with --write-results)."""
    args = parse_args(argv)
    import torch

    torch.set_num_threads(1)
    greedy = SamplingConfig(temperature=0)
    budget = Budget(think=args.think, solution=args.solution)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_model(Path(tmp) / "tiny")
        hf = HFBackend(str(model_dir), device="cpu", batch_size=args.prompts)
        prompts = [hf.chat_prompt(q) for q in tiny_prompts(args.prompts)]
        proc, url = start_server(model_dir)
        try:
            rows = [("(a) HFBackend in-process", lambda: hf.generate(prompts, budget, greedy))]
            for conc in (1, 8):
                remote = OpenAIBackend(url, "tiny", tokenizer=str(model_dir), max_concurrency=conc)
                rows.append((f"({'b' if conc == 1 else 'c'}) OpenAIBackend -> er serve, concurrency {conc}",
                             lambda r=remote: r.generate(prompts, budget, greedy)))
            results = [(name, *timed(fn, args.repeats)) for name, fn in rows]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    ref = [r.completion_ids for r in results[0][2]]
    same = all([r.completion_ids for r in out] == ref for _, _, out in results)
    tokens = sum(len(c) for c in ref)
    base = results[0][1]
    lines = [
        f"Command: `PYTHONPATH=. .venv/bin/python benchmarks/bench_openai.py` (prompts={args.prompts}, "
        f"t={args.think}, s={args.solution}, median of {args.repeats})",
        f"Machine: {os.cpu_count()}-core CPU shared with other agents, {platform.python_implementation()} "
        f"{platform.python_version()}, torch 1 thread per process. Tiny model (`build_tiny_model` defaults), "
        f"greedy; {tokens} completion tokens per call; identical tokens in all variants: {same}.",
        "",
        "| variant | wall s | tokens/s | vs (a) |",
        "|---|---:|---:|---:|",
    ]
    for name, secs, _ in results:
        lines.append(f"| {name} | {secs:.3f} | {tokens / secs:.0f} | {secs / base:.2f}x |")
    table = "\n".join(lines)
    print(table)
    if args.write_results:
        write_section(table)
    return table


def write_section(body: str) -> None:
    """Replace (or append) this benchmark's section in benchmarks/RESULTS.md."""
    path = REPO / "benchmarks" / "RESULTS.md"
    text = path.read_text() if path.exists() else ""
    start = text.find(SECTION)
    block = f"{SECTION}\n\n{body}\n"
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + block
    else:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + block + ("" if end < 0 else text[end:])
    path.write_text(text)


if __name__ == "__main__":
    main()
