"""The resource planner against a real GRPO step on CPU: measured peak memory vs the plan's trainer estimate.

One process per arm (gradient checkpointing on / off) builds nothing: it imports TRL, records
its resident memory, runs ONE real GRPO step of a small random-weight Qwen2 (fp32, one CPU
process: the planner's "one process (no sharding)" engine) through ``trainers.launch.train``,
sampling its resident memory every 2 ms, and reports the peak above the pre-step baseline. The
parent computes ``trainers.plan.plan_run`` for the same config (``max_prompt_tokens`` set to the
longest real prompt) and prints measured / planned.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_plan.py [--write]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPE = {"hidden_size": 512, "num_hidden_layers": 8, "num_attention_heads": 8, "num_key_value_heads": 2,
         "intermediate_size": 1536, "train_steps": 0, "max_position_embeddings": 1024}
OVERRIDES = {"dataset": "embedded:math", "dataset_limit": 4, "think_budget_tokens": 192, "solution_budget_tokens": 192,
             "group_size": 4, "hf_batch_size": 16, "temperature": 1.0}


def _config(model: str, checkpointing: bool, prompt_tokens: int, out: str):
    from trainers.config import load_recipe

    return load_recipe("tiny_cpu", {**OVERRIDES, "model": model, "output_dir": out, "max_prompt_tokens": prompt_tokens,
                                    "grpo": {"per_device_train_batch_size": 16, "max_steps": 1,
                                             "gradient_checkpointing": checkpointing, "disable_tqdm": True}})


def child(model: str, checkpointing: bool, prompt_tokens: int, out: str) -> None:
    """Run one GRPO step and print the resident-memory peak above the baseline (JSON)."""
    import threading
    import time

    import psutil
    import trl  # noqa: F401  (imported before the baseline)

    from trainers.launch import train

    proc = psutil.Process()
    cfg = _config(model, checkpointing, prompt_tokens, out)
    baseline = proc.memory_info().rss
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    trainer = train(cfg)
    done.set()
    thread.join()
    print(json.dumps({"baseline": baseline, "peak": peak[0], "steps": trainer.state.global_step}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="print the RESULTS.md table only")
    parser.add_argument("--child", nargs=4, metavar=("MODEL", "GC", "PROMPT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1] == "1", int(args.child[2]), args.child[3])
        return 0
    from transformers import AutoTokenizer

    from er_env.data import load_problems
    from er_env.data.templates import render_prompt
    from er_tools.tiny_model import build_tiny_model
    from trainers.plan import plan_run

    work = Path(tempfile.mkdtemp(prefix="bench-plan-"))
    model = str(build_tiny_model(work / "model", **SHAPE))
    tok = AutoTokenizer.from_pretrained(model)
    longest = max(len(render_prompt(p, tok, None)[1]) for p in load_problems("embedded:math", limit=4))
    rows = []
    for gc in (True, False):
        cfg = _config(model, gc, longest, str(work / "run"))
        plan, _ = plan_run(cfg)
        trainer_bytes = sum(b for _, b in plan.trainer)
        out = subprocess.run([sys.executable, __file__, "--child", model, "1" if gc else "0", str(longest),
                              str(work / f"run-{gc}")], capture_output=True, text=True, cwd=ROOT)
        if out.returncode:
            print(out.stdout[-3000:], out.stderr[-3000:], file=sys.stderr)
            return 1
        got = json.loads(out.stdout.strip().splitlines()[-1])
        measured = got["peak"] - got["baseline"]
        rows.append((gc, plan.shape.parameters, plan.settings.sequence_tokens, dict(plan.trainer), trainer_bytes,
                     measured))
    mib = 2**20
    print("| gradient checkpointing | params | tokens/seq | planned states MiB | planned activations MiB | "
          "planned trainer MiB | measured peak - baseline MiB | measured / planned |")
    print("|---|---|---|---|---|---|---|---|")
    for gc, n, seq, parts, planned, measured in rows:
        states = parts["model states (params, grads, optimizer)"]
        acts = next(v for k, v in parts.items() if k.startswith("activations"))
        print(f"| {'on' if gc else 'off'} | {n:,} | {seq} | {states / mib:.0f} | {acts / mib:.0f} | "
              f"{planned / mib:.0f} | {measured / mib:.0f} | {measured / planned:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
