r"""The Elastic Reasoning effect, in miniature, on CPU: ER-GRPO at a tight t* vs the model it started from.

One command runs the whole experiment (each stage is skipped when its output exists;
``--fresh`` redoes everything)::

    python benchmarks/er_effect.py            # ~6 min on 2 quiet CPU cores (4 of them: the start model)

1. Task (:mod:`er_tools.synthetic_arith`): sums of 3-4 numbers from 1..5, graded by the
   project's math checker (``\boxed{}`` after ``</think>``). Disjoint problem sets:
   ``--train-problems`` for fine-tuning and GRPO, ``--eval-problems`` held out.
2. Start model: the tiny model fine-tuned on the training problems with mostly long
   (``--long-fraction``) and some short correct traces, so that it mostly thinks long.
3. ER-GRPO: ``er train --config trainers/recipes/er_effect_cpu.yaml`` (thinking cut at
   the recipe's t*, well below the long traces' length), run as a subprocess.
4. Plain GRPO (``--no-plain`` skips it): the same recipe with ``--think-budget-tokens
   256``, i.e. no binding budget.
5. Evaluation with :func:`er_env.rollout.rollout` (HF backend, the recipe's sampling
   temperature and solution budget): every model at every ``--budgets`` thinking
   budget, ``--samples`` samples per problem. Accuracy is averaged per problem first;
   95% confidence intervals are bootstrap intervals over problems (paired, for the
   difference to the start model).

Writes ``<out>/results.json``, ``<out>/er_effect.png`` and prints a Markdown table.
Needs the ``train`` and ``eval`` extras (TRL, matplotlib).
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RECIPE = REPO / "trainers" / "recipes" / "er_effect_cpu.yaml"
UNCONSTRAINED = 256


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/er-effect", help="Output directory (default: runs/er-effect).")
    p.add_argument("--recipe", default=str(RECIPE), 
                   help="ER-GRPO recipe (default: trainers/recipes/er_effect_cpu.yaml).")
    p.add_argument("--train-problems", type=int, default=550, help="Fine-tuning and GRPO problems.")
    p.add_argument("--eval-problems", type=int, default=100, help="Held-out evaluation problems.")
    p.add_argument("--sft-copies", type=int, default=3, help="Fine-tuning documents per training problem.")
    p.add_argument("--long-fraction", type=float, default=0.75, help="Share of long traces in fine-tuning.")
    p.add_argument("--budgets", default="16,32,48,64,96,256", help="Thinking budgets to evaluate (comma list).")
    p.add_argument("--samples", type=int, default=4, help="Samples per problem and budget.")
    p.add_argument("--seed", type=int, default=0, help="Seed of problems, fine-tuning and evaluation sampling.")
    p.add_argument("--no-plain", action="store_true", help="Skip the plain-GRPO (no budget) baseline.")
    p.add_argument("--prepare-only", action="store_true", help="Only write the problems and build the start model.")
    p.add_argument("--fresh", action="store_true", help="Redo every stage even if its output exists.")
    p.add_argument("--plot", default=None, help="PNG path (default: <out>/er_effect.png).")
    return p.parse_args(argv)


def prepare(args: argparse.Namespace, out: Path) -> tuple[Path, Path, Path]:
    """Problem files and the fine-tuned start model (built once)."""
    from er_tools.synthetic_arith import build_start_model, make_splits, write_problems_jsonl

    train, ev = make_splits(args.train_problems, args.eval_problems, seed=args.seed)
    train_path = write_problems_jsonl(train, out / "grpo_train.jsonl")
    eval_path = write_problems_jsonl(ev, out / "eval.jsonl")
    start = out / "start-model"
    if args.fresh or not (start / "config.json").is_file():
        t0 = time.perf_counter()
        build_start_model(start, list(train) * args.sft_copies, long_fraction=args.long_fraction, seed=args.seed)
        print(f"[prepare] start model fine-tuned in {time.perf_counter() - t0:.0f} s -> {start}", flush=True)
    return train_path, eval_path, start


def latest_checkpoint(run_dir: Path) -> Path | None:
    """Return the highest ``checkpoint-N`` directory of a training run, if any."""
    ckpts = sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return ckpts[-1] if ckpts else None


def train_run(args: argparse.Namespace, name: str, start: Path, train_path: Path, out: Path,
              extra: Sequence[str] = ()) -> tuple[Path, float]:
    """Run ``er train`` (a subprocess, exactly the command printed) unless its checkpoint exists."""
    run_dir = out / name
    done = latest_checkpoint(run_dir)
    if done is not None and not args.fresh:
        return done, float("nan")
    cmd = [sys.executable, "-m", "er_cli", "train", "--config", args.recipe, "--model", str(start),
           "--dataset", str(train_path), "--output-dir", str(run_dir), *extra]
    print(f"[{name}] {shlex.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True)
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise RuntimeError(f"{name}: er train wrote no checkpoint under {run_dir}; the recipe must set "
                           "grpo.save_strategy: steps and save_steps: <max_steps>.")
    return ckpt, time.perf_counter() - t0


def training_curve(ckpt: Path) -> list[dict[str, float]]:
    """Per-step reward, thinking tokens and cut share from the checkpoint's ``trainer_state.json``."""
    state = json.loads((ckpt / "trainer_state.json").read_text())
    rows = []
    for h in state["log_history"]:
        if "reward" in h:
            rows.append({"step": h["step"], "reward": h["reward"],
                         "thinking_tokens": h.get("er/math_thinking_tokens_mean", float("nan")),
                         "cut": h.get("er/math_cut_share", float("nan"))})
    return rows


def evaluate(model_dir: Path, problems: Sequence[Any], budgets: Sequence[int], solution: int, samples: int,
             temperature: float, seed: int, reward: Any) -> dict[int, list[Any]]:
    """Episode records per thinking budget (one batched rollout per budget)."""
    from transformers import AutoTokenizer

    from er_env.backends.base import SamplingConfig
    from er_env.backends.hf import HFBackend
    from er_env.budget import Budget
    from er_env.rollout import rollout

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    backend = HFBackend(str(model_dir), tok, device="cpu", batch_size=len(problems) * samples)
    out = {}
    for t in budgets:
        sampling = SamplingConfig(temperature=temperature, seed=seed + t)
        out[t] = rollout(backend, problems, Budget(think=t, solution=solution), sampling, reward, group_size=samples)
    return out


def bootstrap_ci(values: Sequence[float], n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean of ``values`` (resampling the values)."""
    rng = random.Random(seed)
    k = len(values)
    means = sorted(sum(values[rng.randrange(k)] for _ in range(k)) / k for _ in range(n))
    return means[int(0.025 * n)], means[int(0.975 * n) - 1]


def per_problem(records: Sequence[Any], field: str) -> list[float]:
    """Mean of ``field`` per problem (problem order kept)."""
    groups: dict[str, list[float]] = {}
    for r in records:
        value = r.reward if field == "reward" else float(getattr(r.completion, field))
        groups.setdefault(r.problem_id, []).append(value)
    return [statistics.fmean(v) for v in groups.values()]


def summarize(evals: dict[str, dict[int, list[Any]]]) -> dict[str, dict[int, dict[str, Any]]]:
    """Accuracy, thinking tokens, cut share, CIs and the paired difference to the start model."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for name, by_budget in evals.items():
        out[name] = {}
        for t, recs in by_budget.items():
            acc = per_problem(recs, "reward")
            think = per_problem(recs, "thinking_tokens")
            row = {
                "accuracy": statistics.fmean(acc), "accuracy_ci": bootstrap_ci(acc),
                "thinking_tokens": statistics.fmean(think), "thinking_tokens_ci": bootstrap_ci(think),
                "cut_share": statistics.fmean(float(r.completion.thinking_truncated) for r in recs),
                "problems": len(acc), "samples": len(recs),
                "grader_errors": sum(r.is_error for r in recs),
                "checker_timeouts": sum(r.verdict == "timeout" for r in recs),
            }
            if name != "start":
                base = per_problem(evals["start"][t], "reward")
                diff = [a - b for a, b in zip(acc, base, strict=True)]
                row["gain_vs_start"], row["gain_vs_start_ci"] = statistics.fmean(diff), bootstrap_ci(diff)
            out[name][t] = row
    return out


def label(t: int) -> str:
    """Name a budget for the table."""
    return "none (256)" if t >= UNCONSTRAINED else str(t)


def markdown(summary: dict[str, dict[int, dict[str, Any]]]) -> str:
    """Format the results table."""
    lines = ["| model | thinking budget t | accuracy [95% CI] | gain vs start [95% CI] | thinking tokens "
             "[95% CI] | cut at t |", "|---|---:|---:|---:|---:|---:|"]
    for name, rows in summary.items():
        for t, r in rows.items():
            lo, hi = r["accuracy_ci"]
            gain = "" if "gain_vs_start" not in r else (
                f"{r['gain_vs_start']:+.3f} [{r['gain_vs_start_ci'][0]:+.3f}, {r['gain_vs_start_ci'][1]:+.3f}]")
            tl, th = r["thinking_tokens_ci"]
            lines.append(f"| {name} | {label(t)} | {r['accuracy']:.3f} [{lo:.3f}, {hi:.3f}] | {gain} | "
                         f"{r['thinking_tokens']:.1f} [{tl:.1f}, {th:.1f}] | {r['cut_share']:.2f} |")
    return "\n".join(lines)


def plot(summary: dict[str, dict[int, dict[str, Any]]], t_star: int, path: Path) -> Path:
    """Accuracy and thinking length against the thinking budget, with 95% CIs."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("The plot needs matplotlib: pip install 'elastic-reasoning-gym[bench]'") from None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for name, rows in summary.items():
        ts = sorted(rows)
        acc = [rows[t]["accuracy"] for t in ts]
        err = [[a - rows[t]["accuracy_ci"][0] for a, t in zip(acc, ts, strict=True)],
               [rows[t]["accuracy_ci"][1] - a for a, t in zip(acc, ts, strict=True)]]
        ax1.errorbar(ts, acc, yerr=err, marker="o", capsize=3, label=name)
        think = [rows[t]["thinking_tokens"] for t in ts]
        terr = [[v - rows[t]["thinking_tokens_ci"][0] for v, t in zip(think, ts, strict=True)],
                [rows[t]["thinking_tokens_ci"][1] - v for v, t in zip(think, ts, strict=True)]]
        ax2.errorbar(ts, think, yerr=terr, marker="o", capsize=3, label=name)
    for ax in (ax1, ax2):
        ax.axvline(t_star, color="grey", linestyle=":", label=f"training t* = {t_star}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("thinking budget t (tokens; 256 = unconstrained)")
        ax.grid(alpha=0.3)
    ax1.set_ylabel("accuracy (mean over problems, 95% CI)")
    ax2.set_ylabel("thinking tokens used")
    ax1.legend()
    fig.suptitle("Elastic Reasoning in miniature: sums task, tiny model, CPU")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Run the experiment; print the table; write results.json and the plot."""
    args = parse_args(argv)
    out = (REPO / args.out) if not Path(args.out).is_absolute() else Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    train_path, eval_path, start = prepare(args, out)
    if args.prepare_only:
        print(f"prepared {train_path}, {eval_path} and {start}")
        return 0
    from er_env.data import load_problems
    from er_env.rewards import MathReward
    from trainers.config import load_recipe

    cfg = load_recipe(args.recipe)
    models = {"start": start}
    times: dict[str, float] = {}
    models["er-grpo"], times["er-grpo"] = train_run(args, "er-grpo", start, train_path, out)
    if not args.no_plain:
        models["plain-grpo"], times["plain-grpo"] = train_run(
            args, "plain-grpo", start, train_path, out, ["--think-budget-tokens", str(UNCONSTRAINED)])
    budgets = sorted({int(b) for b in args.budgets.split(",")})
    problems = load_problems(str(eval_path))
    reward = MathReward(timeout_s=30.0)  # a loaded shared machine must not turn slow checks into wrong answers
    t0 = time.perf_counter()
    evals = {name: evaluate(path, problems, budgets, cfg.solution_budget_tokens, args.samples, cfg.temperature,
                            args.seed, reward) for name, path in models.items()}
    times["evaluation"] = time.perf_counter() - t0
    summary = summarize(evals)
    curves = {name: training_curve(path) for name, path in models.items() if name != "start"}
    result = {"recipe": str(args.recipe), "t_star": cfg.think_budget_tokens,
              "solution_budget": cfg.solution_budget_tokens, "temperature": cfg.temperature,
              "eval_problems": len(problems), "samples": args.samples,
              "models": {k: str(v) for k, v in models.items()}, "seconds": times,
              "total_seconds": time.perf_counter() - t_all,
              "summary": {n: {str(t): r for t, r in rows.items()} for n, rows in summary.items()},
              "training_curves": curves}
    (out / "results.json").write_text(json.dumps(result, indent=2))
    png = plot(summary, cfg.think_budget_tokens, Path(args.plot) if args.plot else out / "er_effect.png")
    print(markdown(summary))
    for name, rows in curves.items():
        k = max(1, len(rows) // 4)
        first, last = rows[:k], rows[-k:]
        print(f"{name} training: reward {statistics.fmean(r['reward'] for r in first):.3f} (first {k} steps) -> "
              f"{statistics.fmean(r['reward'] for r in last):.3f} (last {k}); thinking tokens "
              f"{statistics.fmean(r['thinking_tokens'] for r in first):.1f} -> "
              f"{statistics.fmean(r['thinking_tokens'] for r in last):.1f}")
    print(f"{len(problems)} held-out problems x {args.samples} samples per budget; times {times}; "
          f"total {result['total_seconds']:.0f} s; wrote {out / 'results.json'} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
