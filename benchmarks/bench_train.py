"""GRPO step time on CPU: TRL's own generation vs the Elastic Reasoning rollout_func, side by side.

Both runs train the tiny model (built once, locally) on the same embedded math problems with
the same GRPOConfig, groups and steps; the only difference is generation:

- ``trl-generate``: GRPOTrainer's built-in ``model.generate`` with
  ``max_completion_length = t + s + 1`` (one unconstrained pass, no forcing);
- ``er-rollout``: :class:`trainers.rollout.ElasticRolloutFunc` (HF backend on the live policy,
  thinking capped at ``t``, ``</think>`` forced, solution capped at ``s``).

A callback clocks every optimizer step end to end (generation + reward + update); the script
reports the median over the steps after the first (the first pays one-time start-up: checker
pool, caches) and the ratio.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_train.py --steps 6 --think 32 --solution 32
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path


class _StepClock:
    """Trainer callback: wall-clock time at the start of training and at each optimizer step end.

    TRL's own ``step_time`` metric covers ``training_step`` only; this covers the whole step
    (generation, reward, loss, backward, optimizer).
    """

    def __init__(self) -> None:
        self.times: list[float] = []

    def __getattr__(self, name: str):  # every other TrainerCallback event is a no-op
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def on_train_begin(self, *args, **kwargs) -> None:
        self.times.append(time.perf_counter())

    def on_step_end(self, *args, **kwargs) -> None:
        self.times.append(time.perf_counter())


def _run(kind: str, model_dir: Path, problems, args: argparse.Namespace, out_dir: Path) -> dict[str, float]:
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from er_env.backends.base import SamplingConfig
    from er_env.budget import Budget
    from trainers.rewards import make_reward_func
    from trainers.rollout import make_rollout_func, problems_to_dataset

    tok = AutoTokenizer.from_pretrained(model_dir)
    config = GRPOConfig(
        output_dir=str(out_dir / kind), num_generations=args.group, per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=1, max_steps=args.steps, learning_rate=1e-3, beta=0.0, use_cpu=True, bf16=False,
        activation_checkpointing=False, logging_steps=1, save_strategy="no", report_to="none", seed=0,
        temperature=1.0, max_completion_length=args.think + args.solution + 1, disable_tqdm=True,
    )
    kwargs = {}
    if kind == "er-rollout":
        kwargs["rollout_func"] = make_rollout_func(problems, Budget(think=args.think, solution=args.solution),
                                                   SamplingConfig(temperature=1.0, seed=0))
        dataset = problems_to_dataset(problems)
    else:  # TRL renders the prompt itself: give it the same chat messages
        from er_env.data.templates import build_messages

        dataset = problems_to_dataset(problems).add_column("messages", [build_messages(p) for p in problems])
        dataset = dataset.remove_columns("prompt").rename_column("messages", "prompt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = GRPOTrainer(model=str(model_dir), processing_class=tok, args=config, train_dataset=dataset,
                              reward_funcs=[make_reward_func("math", tokenizer=tok)], **kwargs)
        stamps = _StepClock()
        trainer.add_callback(stamps)
        t0 = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - t0
    steps = [b - a for a, b in zip(stamps.times, stamps.times[1:], strict=False)]
    lengths = [h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h]
    return {"median_step_s": statistics.median(steps[1:] or steps), "first_step_s": steps[0], "wall_s": wall,
            "mean_len": statistics.mean(lengths)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--think", type=int, default=32)
    parser.add_argument("--solution", type=int, default=32)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()

    import torch

    from er_env.data import load_problems
    from er_tools.tiny_model import build_tiny_model

    torch.set_num_threads(2)
    problems = load_problems("embedded:math", limit=4)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_model(Path(tmp) / "tiny")
        results = {kind: _run(kind, model_dir, problems, args, Path(tmp)) for kind in ("trl-generate", "er-rollout")}
    base = results["trl-generate"]["median_step_s"]
    print(f"tiny model, {args.batch} completions/step (groups of {args.group}), t={args.think}, s={args.solution}, "
          f"{args.steps} steps, CPU")
    print("| generation | median step s | first step s | mean completion tokens | wall s | step vs TRL |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind, r in results.items():
        print(f"| {kind} | {r['median_step_s']:.2f} | {r['first_step_s']:.2f} | {r['mean_len']:.1f} | "
              f"{r['wall_s']:.1f} | {r['median_step_s'] / base:.2f}x |")


if __name__ == "__main__":
    main()
