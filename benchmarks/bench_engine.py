"""Budget engine benchmark: the two-phase protocol vs one pass vs a naive re-encode.

Measures, side by side in one run, on a tiny randomly initialised Qwen2 model (CPU):

(a) two-phase ``HFBackend`` generation (thinking budget t, forced ``</think>``,
    solution budget s), the KV cache carried into the solution phase;
(b) a single unconstrained ``HFBackend`` pass producing the same number of tokens;
(c) a naive two-phase generation that re-encodes ``prompt + thinking + </think>``
    for the solution phase (``HFBackend(reuse_kv_cache=False)``, what a two-call
    server backend does without prefix caching);
(d) ``transformers``' own ``model.generate`` for the same number of tokens (reference).

Random weights rarely sample ``</think>``, and the pad id stands in for EOS, so
every sample uses its full budgets and all variants process the same tokens; the
script prints the token counts and warns if they differ. Long prompts make the re-encode cost of (c) visible.

Run:
    python benchmarks/bench_engine.py                      # print the table
    python benchmarks/bench_engine.py --write-results      # also update benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from er_env.backends.base import SamplingConfig
from er_env.backends.hf import HFBackend
from er_env.budget import Budget
from er_tools.tiny_model import build_tiny_model

SECTION = "## Budget engine"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the benchmark flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prompt-len", type=int, default=2048, help="Prompt length in tokens (longest prompt).")
    p.add_argument("--batch", type=int, default=4, help="Prompts per generate call.")
    p.add_argument("--think", type=int, default=64, help="Thinking budget t.")
    p.add_argument("--solution", type=int, default=64, help="Solution budget s.")
    p.add_argument("--repeats", type=int, default=3, help="Timed rounds (after one warm-up round).")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads.")
    p.add_argument("--hidden-size", type=int, default=256, help="Model width.")
    p.add_argument("--layers", type=int, default=4, help="Decoder layers.")
    p.add_argument("--write-results", action="store_true", help="Write the section into benchmarks/RESULTS.md.")
    return p.parse_args(argv)


def make_prompts(backend: HFBackend, n: int, length: int, seed: int = 0) -> list[list[int]]:
    """Random-token prompts of different lengths (down to 3/4 of ``length``), R1 template around them."""
    rng = random.Random(seed)
    special = set(backend.tokenizer.all_special_ids)
    pool = [i for i in range(backend.vocab_size) if i not in special]
    head, tail = backend.chat_prompt("Q")[:-1], backend.encode("<｜Assistant｜><think>\n")
    lengths = [length - (length // 4) * i // max(1, n - 1) for i in range(n)]
    return [head + [rng.choice(pool) for _ in range(k - len(head) - len(tail))] + tail for k in lengths]


def _pad_id(path: Path) -> int:
    from transformers import AutoTokenizer

    return int(AutoTokenizer.from_pretrained(path).pad_token_id)


def hf_generate_reference(backend: HFBackend, prompts: list[list[int]], new_tokens: int) -> int:
    """(d): transformers' generate, left-padded batch, exactly ``new_tokens`` new tokens."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), backend.pad_id)
    mask = torch.zeros_like(ids)
    for r, p in enumerate(prompts):
        ids[r, width - len(p):] = torch.tensor(p)
        mask[r, width - len(p):] = 1
    with torch.inference_mode():
        out = backend.model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
            do_sample=False, pad_token_id=backend.pad_id,
        )
    return int((out.shape[1] - width) * len(prompts))


def main(argv: list[str] | None = None) -> int:
    """Build the model, time the four variants interleaved, print (and optionally write) the table."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    greedy = SamplingConfig(temperature=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_model(
            Path(tmp) / "bench-model", train_steps=0, hidden_size=args.hidden_size, num_hidden_layers=args.layers,
            num_attention_heads=8, num_key_value_heads=4, intermediate_size=2 * args.hidden_size,
            max_position_embeddings=args.prompt_len + args.think + args.solution + 64,
        )
        # EOS := the pad id, which the template never uses: random weights then never stop
        # early, so every variant generates exactly the same number of tokens
        cached = HFBackend(str(path), device="cpu", batch_size=args.batch, eos_ids=[_pad_id(path)])
    naive = HFBackend(
        cached.model, cached.tokenizer, batch_size=args.batch, reuse_kv_cache=False, eos_ids=sorted(cached.special.eos)
    )
    prompts = make_prompts(cached, args.batch, args.prompt_len)
    two_phase = Budget(think=args.think, solution=args.solution)
    total_new = args.think + 1 + args.solution  # thinking + forced </think> + solution, per sample

    def run_a() -> int:
        return sum(len(r.completion_ids) for r in cached.generate(prompts, two_phase, greedy))

    def run_b() -> int:
        out = cached.generate(prompts, Budget.unconstrained(max_tokens=total_new), greedy)
        return sum(len(r.completion_ids) for r in out)

    def run_c() -> int:
        return sum(len(r.completion_ids) for r in naive.generate(prompts, two_phase, greedy))

    def run_d() -> int:
        return hf_generate_reference(cached, prompts, total_new)

    variants = {
        "(a) two-phase, KV cache carried": run_a,
        "(b) single pass, same tokens": run_b,
        "(c) two-phase, prefix re-encoded": run_c,
        "(d) transformers generate (ref.)": run_d,
    }
    check = cached.generate(prompts, two_phase, greedy)
    assert [r.completion_ids for r in check] == [r.completion_ids for r in naive.generate(prompts, two_phase, greedy)]
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    wall: dict[str, list[float]] = {k: [] for k in variants}
    tokens: dict[str, int] = {}
    for round_ in range(args.repeats + 1):  # round 0 warms up; variants interleaved each round
        for name, fn in variants.items():
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            tokens[name] = fn()
            if round_:
                cpu[name].append(time.process_time() - start_cpu)
                wall[name].append(time.perf_counter() - start_wall)
    med = {k: statistics.median(v) for k, v in cpu.items()}
    med_wall = {k: statistics.median(v) for k, v in wall.items()}
    a, b, c, d = (med[k] for k in variants)
    lines = [
        f"Model: random Qwen2, hidden {args.hidden_size}, {args.layers} layers; batch {args.batch}, prompts "
        f"{min(map(len, prompts))}-{max(map(len, prompts))} tokens; t={args.think}, s={args.solution}; greedy; "
        f"CPU, {args.threads} torch thread(s); median of {args.repeats} interleaved rounds after a warm-up. "
        "Ratios use process CPU time (robust to other jobs on the shared machine); wall time for reference.",
        "",
        "| variant | new tokens (batch) | CPU time (s) | CPU ms / token | wall time (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in variants:
        lines.append(
            f"| {name} | {tokens[name]} | {med[name]:.3f} | {1000 * med[name] / tokens[name]:.2f} "
            f"| {med_wall[name]:.3f} |"
        )
    lines += [
        "",
        f"- (a)/(b) two-phase vs single pass: **{a / b:.3f}** (target <= 1.05)",
        f"- (c)/(a) naive re-encode vs KV cache carried: **{c / a:.3f}**",
        f"- (a)/(d) our decode loop vs transformers generate: **{a / d:.3f}**",
        f"- forced </think> per sample: {sum(check[0].forced_mask)}; thinking finish: {check[0].think_finish_reason}",
    ]
    report = "\n".join(lines)
    print(report)
    if tokens[list(variants)[0]] != tokens[list(variants)[1]]:
        print("warning: (a) and (b) generated different token counts (a stop token was sampled).")
    if args.write_results:
        write_section(report, argv)
    return 0


def write_section(report: str, argv: list[str] | None) -> None:
    """Replace (or append) this benchmark's section of benchmarks/RESULTS.md."""
    results = Path(__file__).with_name("RESULTS.md")
    cmd = " ".join(["python benchmarks/bench_engine.py", *(argv if argv is not None else sys.argv[1:])])
    machine = f"{platform.machine()} CPU, {torch.get_num_threads()} thread(s) used, 2-core shared machine"
    body = (
        f"{SECTION}\n\nCommand: `{cmd}` (machine: {machine}; torch {torch.__version__}).\n\n{report}\n\n"
        "Reading: (a) runs the prompt prefill once and carries the KV cache across the forced `</think>`, so "
        "its cost matches one pass over the same tokens; (c) pays a second prefill of prompt + thinking.\n"
    )
    text = results.read_text(encoding="utf-8") if results.exists() else "# Benchmark results\n"
    start = text.find(SECTION)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + body + ("\n" + text[end + 1:] if end >= 0 else "")
    results.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
