"""Evaluation benchmark: nested vs independent budget sweeps; eval throughput per backend.

(a) **Nested vs independent sweep** (same run, interleaved): a 4-budget sweep
    ``t = T/4, T/2, 3T/4, T`` with one solution budget ``s``, method ``elastic`` (and
    ``s1``), on the tiny model (CPU, HF backend). Counts every token the engine
    *sampled* (from the completions each ``generate`` call returned), the prompt
    tokens it had to encode (prefill), engine calls and wall time. The two must give
    each budget the same per-sample law (``er_env.eval.nested``); here they are also
    checked token-identical under greedy decoding. Target: >= 40% fewer sampled tokens.
(b) **Eval throughput**: ``run_eval`` end to end (prompts, generation, the
    in-process math checker, results files) on real AIME 2024 rows, HF backend, and
    the vLLM backend when ``vllm`` imports (run with the vLLM venv to get both rows).

Run:
    python benchmarks/bench_eval.py                     # random-weight tiny model: budgets always bind
    python benchmarks/bench_eval.py --train-steps 150   # trained tiny model: closes thinking early
    .venv-vllm/bin/python benchmarks/bench_eval.py --throughput-only   # + the vLLM row
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class Counting:
    """Wraps a backend and counts what its ``generate`` calls did."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.special, self.tokenizer, self.context_length = inner.special, inner.tokenizer, inner.context_length
        self.reset()

    def reset(self) -> None:
        self.calls = self.sampled = self.prefill = 0

    def generate(self, prompts, budget, sampling=None):
        out = self.inner.generate(prompts, budget, sampling)
        self.calls += 1
        self.prefill += sum(len(p) for p in prompts)
        self.sampled += sum(c.thinking_tokens + c.solution_tokens for c in out)
        return out

    def encode(self, text):
        return self.inner.encode(text)

    def close(self):
        self.inner.close()


def nested_vs_independent(backend, prompts, budgets, method, reps, sampling):
    from er_env.eval.methods import get_method

    m = get_method(method)
    counting = Counting(backend)
    stats = {True: [], False: []}
    outputs = {}
    for _ in range(reps):
        for nested in (False, True):  # interleaved
            counting.reset()
            t0 = time.perf_counter()
            outputs[nested] = m.generate(counting, [prompts] * len(budgets), budgets, sampling, nested=nested)
            stats[nested].append((time.perf_counter() - t0, counting.sampled, counting.prefill, counting.calls))
    same = all(a.completion_ids == b.completion_ids for ra, rb in zip(outputs[True], outputs[False], strict=True)
               for a, b in zip(ra, rb, strict=True))
    return stats, same


def throughput(backend, name, model, out, budgets, limit, samples):
    from er_env.eval.config import EvalConfig
    from er_env.eval.runner import run_eval

    cfg = EvalConfig(model=model, backend=name, dataset="aime2024", limit=limit, samples=samples, budgets=budgets,
                     methods="elastic", temperature=0.6, seed=None, out=out)
    t0 = time.perf_counter()
    res = run_eval(cfg, backend=backend, progress=False)
    wall = time.perf_counter() - t0
    n = len(res["samples"])
    toks = sum(r["generated_tokens"] for r in res["samples"])
    return n, toks, wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--think-max", type=int, default=128, help="Largest thinking budget T.")
    ap.add_argument("--solution", type=int, default=32, help="Solution budget s.")
    ap.add_argument("--prompts", type=int, default=8, help="Prompts in the sweep.")
    ap.add_argument("--samples", type=int, default=2, help="Samples per prompt.")
    ap.add_argument("--reps", type=int, default=2, help="Interleaved repetitions.")
    ap.add_argument("--train-steps", type=int, default=0, help="Tiny-model training steps (0: random weights).")
    ap.add_argument("--throughput-only", action="store_true", help="Skip part (a).")
    args = ap.parse_args()

    import torch

    from er_env.backends.base import SamplingConfig
    from er_env.backends.hf import HFBackend
    from er_env.budget import Budget
    from er_tools.tiny_model import build_tiny_model, tiny_prompts

    torch.set_num_threads(1)
    tmp = tempfile.mkdtemp(prefix="bench-eval-")
    model = str(build_tiny_model(Path(tmp) / "tiny", num_attention_heads=2, num_key_value_heads=1,
                                 max_position_embeddings=1024, train_steps=args.train_steps))
    hf = HFBackend(model, device="cpu", batch_size=16)
    print(f"# bench_eval: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
          f"{torch.__version__}, tiny model train_steps={args.train_steps}")
    if not args.throughput_only:
        T, s = args.think_max, args.solution
        budgets = [Budget(T * i // 4, s) for i in range(1, 5)]
        prompts = [hf.chat_prompt(q) for q in tiny_prompts(args.prompts)] * args.samples
        print(f"\n## (a) nested vs independent: budgets {[f'{b.think}:{b.solution}' for b in budgets]}, "
              f"{len(prompts)} samples, {args.reps} interleaved reps\n")
        print("| method | sampling | mode | sampled tokens | prefill tokens | engine calls | wall s (median) |"
              " tokens vs independent | time vs independent |")
        print("|---|---|---|---:|---:|---:|---:|---:|---:|")
        for method in ("elastic", "s1"):
            for label, sampling in (("greedy", SamplingConfig(temperature=0)),
                                    ("T=0.6 seeded", SamplingConfig(temperature=0.6, top_p=0.95, seed=0))):
                stats, same = nested_vs_independent(hf, prompts, budgets, method, args.reps, sampling)
                ind, nes = stats[False], stats[True]
                wi, wn = statistics.median(x[0] for x in ind), statistics.median(x[0] for x in nes)
                for mode, rows, w in (("independent", ind, wi), ("nested", nes, wn)):
                    tok = rows[-1][1]
                    print(f"| {method} | {label} | {mode} | {tok} | {rows[-1][2]} | {rows[-1][3]} | {w:.2f} | "
                          f"{tok / ind[-1][1]:.3f} | {w / wi:.3f} |")
                if label == "greedy":
                    print(f"|  |  | greedy nested == independent, token for token: {same} |  |  |  |  |  |  |")
    print("\n## (b) eval throughput (run_eval end to end: AIME 2024 rows, in-process math checker)\n")
    print(f"budgets 32:16,64:16,96:16 (nested), 8 problems x 4 samples, T=0.6 unseeded; median of {args.reps + 1} "
          "interleaved runs\n")
    print("| backend | samples | sampled tokens | wall s | samples/s | sampled tokens/s |")
    print("|---|---:|---:|---:|---:|---:|")
    backends = [("hf", hf)]
    if importlib.util.find_spec("vllm") is not None:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        from er_env.backends.vllm import VLLMBackend

        backends.append(("vllm", VLLMBackend(model, dtype="float32", max_model_len=1024, enforce_eager=True, seed=0)))
    else:
        print("| vllm | not importable in this interpreter (use the vLLM venv) | | | | |")
    runs: dict[str, list[tuple[int, int, float]]] = {name: [] for name, _ in backends}
    for name, backend in backends:
        throughput(backend, name, model, os.path.join(tmp, f"warm-{name}"), "16:16", 4, 1)
    for rep in range(args.reps + 1):  # interleaved; a fresh output directory each time (no resume)
        for name, backend in backends:
            out = os.path.join(tmp, f"tp-{name}-{rep}")
            runs[name].append(throughput(backend, name, model, out, "32:16,64:16,96:16", 8, 4))
    for name, rs in runs.items():
        n, toks = rs[0][0], statistics.median(r[1] for r in rs)
        wall = statistics.median(r[2] for r in rs)
        print(f"| {name} | {n} | {toks:.0f} | {wall:.2f} | {n / wall:.1f} | {toks / wall:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
