r"""Elastic Reasoning's first claim, in miniature, on CPU: answering when the thinking was cut.

The second miniature beside ``benchmarks/er_effect.py`` (whose stages it reuses): there a cut is
nearly always fatal, so ER-GRPO can only learn to think short. Here the task
(:mod:`er_tools.synthetic_verify`) reaches the answer early and then verifies it, so
partial thinking often carries the answer, and the start model has only seen complete
traces. One command runs every seed::

    python benchmarks/er_cut.py                # 3 seeds; ~4 min per seed on 2 quiet CPU cores

Per seed (under ``<out>/seed<k>/``; each stage skipped when its output exists, ``--fresh`` redoes it):

1. Problems: sums of 3-4 numbers from 1..5 (:func:`er_tools.synthetic_arith.make_splits`),
   disjoint training / held-out sets.
2. Start model: the tiny model fine-tuned on complete verify traces
   (:func:`er_tools.synthetic_verify.build_start_model`; never a forced ``</think>``).
3. ER-GRPO: ``er train --config trainers/recipes/er_cut_cpu.yaml`` (thinking cut at
   t*, after the first pass of every trace and before its end), a subprocess.
4. Plain GRPO (the control): the same recipe and steps with ``--think-budget-tokens 256``.
5. Evaluation with :func:`er_env.rollout.rollout` at every ``--budgets`` thinking budget;
   each sample's outcome and whether its thinking was cut go through
   :mod:`er_env.eval.metrics` (what ``er eval`` reports): accuracy, accuracy when cut and
   when not cut (with counts), the area under pass@1 vs log2(t) over the constrained
   budgets, 95% bootstrap intervals over problems.

Pooled rows treat each (seed, problem) as one unit of the bootstrap. Writes
``<out>/results.json``, ``<out>/er_cut.png`` (or ``--plot``) and prints Markdown tables.
Needs the ``train`` and ``eval`` extras (TRL, matplotlib).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import er_effect as fx  # noqa: E402  (after the path fix)

RECIPE = REPO / "trainers" / "recipes" / "er_cut_cpu.yaml"
UNCONSTRAINED = fx.UNCONSTRAINED
MIN_CUT_SAMPLES = 20  # the plot of accuracy when cut leaves out budgets with fewer cut samples (the tables keep them)
CURVE_KEYS = {"reward": "reward", "reward_cut": "er/math_reward_cut_mean",
              "reward_not_cut": "er/math_reward_not_cut_mean", "cut_share": "er/math_cut_share",
              "thinking_tokens": "er/math_thinking_tokens_mean"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/er-cut", help="Output directory (default: runs/er-cut).")
    p.add_argument("--recipe", default=str(RECIPE), help="ER-GRPO recipe (default: trainers/recipes/er_cut_cpu.yaml).")
    p.add_argument("--seeds", default="0,1,2", help="Seeds (comma list): problems, start model, training, sampling.")
    p.add_argument("--train-problems", type=int, default=550, help="Fine-tuning and GRPO problems.")
    p.add_argument("--eval-problems", type=int, default=100, help="Held-out evaluation problems.")
    p.add_argument("--sft-copies", type=int, default=3, help="Fine-tuning documents per training problem.")
    p.add_argument("--start-steps", type=int, default=None,
                   help="Fine-tuning steps of the start model (default: synthetic_verify.START_MODEL_SETTINGS).")
    p.add_argument("--budgets", default="16,24,32,40,48,64,96,256", help="Thinking budgets to evaluate (comma list; "
                   f"{UNCONSTRAINED} = unconstrained, left out of the area).")
    p.add_argument("--samples", type=int, default=4, help="Samples per problem and budget.")
    p.add_argument("--no-plain", action="store_true", help="Skip the plain-GRPO control.")
    p.add_argument("--prepare-only", action="store_true", help="Only write the problems and build the start models.")
    p.add_argument("--fresh", action="store_true", help="Redo every stage even if its output exists.")
    p.add_argument("--plot", default=None, help="PNG path (default: <out>/er_cut.png).")
    p.add_argument("--report-only", action="store_true",
                   help="Run nothing: print the tables and redraw the plot from <out>/results.json.")
    args = p.parse_args(argv)
    try:
        args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
        args.budget_list = sorted({int(b) for b in args.budgets.split(",") if b.strip()})
    except ValueError:
        p.error(f"--seeds and --budgets take comma-separated integers, got --seeds {args.seeds!r} "
                f"--budgets {args.budgets!r}.")
    if not args.seed_list or not args.budget_list or min(args.budget_list) < 1:
        p.error(f"Need at least one seed and budgets >= 1, got --seeds {args.seeds!r} --budgets {args.budgets!r}.")
    return args


def prepare(args: argparse.Namespace, out: Path, seed: int) -> tuple[Path, Path, Path]:
    """Problem files and the fine-tuned start model of one seed (built once)."""
    from er_tools.synthetic_arith import make_splits, write_problems_jsonl
    from er_tools.synthetic_verify import build_start_model

    train, ev = make_splits(args.train_problems, args.eval_problems, seed=seed)
    train_path = write_problems_jsonl(train, out / "grpo_train.jsonl")
    eval_path = write_problems_jsonl(ev, out / "eval.jsonl")
    start = out / "start-model"
    if args.fresh or not (start / "config.json").is_file():
        t0 = time.perf_counter()
        steps = {} if args.start_steps is None else {"train_steps": args.start_steps}
        build_start_model(start, list(train) * args.sft_copies, seed=seed, **steps)
        print(f"[seed {seed}] start model fine-tuned in {time.perf_counter() - t0:.0f} s -> {start}", flush=True)
    return train_path, eval_path, start


def rows_of(records: Sequence[Any], seed: int) -> list[dict[str, Any]]:
    """Rollout records as ``er_env.eval.metrics`` sample rows (problem ids prefixed by the seed)."""
    return [{"problem_id": f"{seed}/{r.problem_id}", "correct": (not r.is_error) and r.reward >= 0.999,
             "is_error": r.is_error, "cut": r.completion.thinking_truncated,
             "thinking_tokens": r.completion.thinking_tokens, "solution_tokens": r.completion.solution_tokens}
            for r in records]


def summarize_rows(by_budget: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per-budget :class:`~er_env.eval.metrics.Summary` dicts and the area over the constrained budgets."""
    from er_env.eval.metrics import auc_summary, bootstrap_ci, summarize

    out: dict[str, Any] = {"budgets": {}}
    for t, rows in sorted(by_budget.items()):
        s = summarize(rows).to_dict()
        per: dict[str, list[float]] = {}
        for r in rows:
            per.setdefault(r["problem_id"], []).append(float(r["thinking_tokens"]))
        think = [statistics.fmean(v) for v in per.values()]
        s["thinking_tokens_ci"] = list(bootstrap_ci(think))
        out["budgets"][str(t)] = s
    out["auc"] = auc_summary({t: rows for t, rows in by_budget.items() if t < UNCONSTRAINED}).to_dict()
    return out


def training_curve(ckpt: Path) -> list[dict[str, float]]:
    """Per-step reward, reward of cut / not-cut rollouts, share cut and thinking tokens (TRL's log history)."""
    state = json.loads((ckpt / "trainer_state.json").read_text())
    return [{"step": h["step"], **{k: h.get(v, math.nan) for k, v in CURVE_KEYS.items()}}
            for h in state["log_history"] if "reward" in h]


def run_seed(args: argparse.Namespace, out: Path, seed: int, cfg: Any, reward: Any) -> dict[str, Any]:
    """All stages of one seed; returns its sample rows, training curves and times."""
    from er_env.data import load_problems

    train_path, eval_path, start = prepare(args, out, seed)
    seed_args = argparse.Namespace(**{**vars(args), "recipe": args.recipe})
    models: dict[str, Path] = {"start": start}
    times: dict[str, float] = {}
    extra = ["--seed", str(seed)]
    models["er-grpo"], times["er-grpo"] = fx.train_run(seed_args, "er-grpo", start, train_path, out, extra)
    if not args.no_plain:
        models["plain-grpo"], times["plain-grpo"] = fx.train_run(
            seed_args, "plain-grpo", start, train_path, out, [*extra, "--think-budget-tokens", str(UNCONSTRAINED)])
    problems = load_problems(str(eval_path))
    t0 = time.perf_counter()
    rows = {}
    for name, path in models.items():
        ev = fx.evaluate(path, problems, args.budget_list, cfg.solution_budget_tokens, args.samples,
                         cfg.temperature, seed, reward)
        rows[name] = {t: rows_of(recs, seed) for t, recs in ev.items()}
    times["evaluation"] = time.perf_counter() - t0
    curves = {name: training_curve(p) for name, p in models.items() if name != "start"}
    return {"rows": rows, "curves": curves, "seconds": times, "models": {k: str(v) for k, v in models.items()}}


def _fmt(x: Any, lo: Any = None, hi: Any = None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    core = f"{x:.{digits}f}"
    return core if lo is None else f"{core} [{lo:.{digits}f}, {hi:.{digits}f}]"


def label(t: int) -> str:
    """Name a budget for the tables."""
    return f"none ({t})" if t >= UNCONSTRAINED else str(t)


def markdown(pooled: dict[str, Any], per_seed: dict[int, dict[str, Any]], t_star: int) -> str:
    """The pooled table, the areas, and accuracy when cut at t* per seed."""
    lines = ["| model | thinking budget t | accuracy [95% CI] | accuracy when cut [95% CI] (correct/n) | "
             "accuracy not cut [95% CI] (correct/n) | cut share | thinking tokens [95% CI] |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, res in pooled.items():
        for t, s in res["budgets"].items():
            cut = (f"{_fmt(s['accuracy_cut'], s['accuracy_cut_ci_low'], s['accuracy_cut_ci_high'])} "
                   f"({s['correct_cut']}/{s['samples_cut']})")
            ncut = (f"{_fmt(s['accuracy_not_cut'], s['accuracy_not_cut_ci_low'], s['accuracy_not_cut_ci_high'])} "
                    f"({s['correct_not_cut']}/{s['samples_not_cut']})")
            lo, hi = s["thinking_tokens_ci"]
            lines.append(f"| {name} | {label(int(t))} | {_fmt(s['pass_at_1'], s['ci_low'], s['ci_high'])} | {cut} | "
                         f"{ncut} | {_fmt(s['share_cut'], digits=2)} | {_fmt(s['mean_thinking_tokens'], lo, hi, 1)} |")
    lines += ["", "Area under accuracy vs thinking budget (trapezoid over log2 t, divided by the log2 range of the "
              "constrained budgets; the unconstrained budget left out), 95% bootstrap CI:", "",
              "| model | budgets | AUC [95% CI] |", "|---|---|---:|"]
    for name, res in pooled.items():
        a = res["auc"]
        text = _fmt(a["value"], a["ci_low"], a["ci_high"]) if a["value"] is not None else f"— ({a['reason']})"
        lines.append(f"| {name} | {', '.join(map(str, a['budgets']))} | {text} |")
    lines += ["", f"Per seed: accuracy when cut at t* = {t_star} (correct/n) | unconstrained accuracy | "
              "unconstrained thinking tokens | AUC:", "", "| seed | model | when cut at t* | unconstrained | "
              "thinking tokens | AUC |", "|---:|---|---:|---:|---:|---:|"]
    for seed, res in per_seed.items():
        for name, r in res.items():
            s, u = r["budgets"].get(str(t_star)), r["budgets"][str(max(int(t) for t in r["budgets"]))]
            cut = "—" if s is None else f"{_fmt(s['accuracy_cut'])} ({s['correct_cut']}/{s['samples_cut']})"
            lines.append(f"| {seed} | {name} | {cut} | {_fmt(u['pass_at_1'])} | "
                         f"{_fmt(u['mean_thinking_tokens'], digits=1)} | {_fmt(r['auc']['value'])} |")
    return "\n".join(lines)


def mean_curves(curves: Sequence[list[dict[str, float]]]) -> list[dict[str, float]]:
    """Step-wise mean over seeds of the training curves (missing values skipped)."""
    out = []
    for step_rows in zip(*curves, strict=False):
        row = {"step": step_rows[0]["step"]}
        for k in CURVE_KEYS:
            vals = [r[k] for r in step_rows if r[k] is not None and not math.isnan(r[k])]
            row[k] = statistics.fmean(vals) if vals else math.nan
        out.append(row)
    return out


def plot(pooled: dict[str, Any], curves: dict[str, list[dict[str, float]]], t_star: int, path: Path,
         title: str = "Answering when cut, in miniature: verify-trace sums, tiny model, CPU (seeds pooled)") -> Path:
    """Accuracy and accuracy when cut vs budget (pooled seeds, 95% CI); training curves (seed means)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("The plot needs matplotlib: pip install 'elastic-reasoning-gym[bench]'") from None
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    (a1, a2), (a3, a4) = axes
    for name, res in pooled.items():
        ts = sorted(int(t) for t in res["budgets"])
        for ax, key in ((a1, ""), (a2, "accuracy_cut")):
            if key:
                rows = [(t, res["budgets"][str(t)]) for t in ts
                        if res["budgets"][str(t)]["samples_cut"] >= MIN_CUT_SAMPLES]
                ys = [s[key] for _, s in rows]
                err = [[y - s[f"{key}_ci_low"] for y, (_, s) in zip(ys, rows, strict=True)],
                       [s[f"{key}_ci_high"] - y for y, (_, s) in zip(ys, rows, strict=True)]]
            else:
                rows = [(t, res["budgets"][str(t)]) for t in ts]
                ys = [s["pass_at_1"] for _, s in rows]
                err = [[y - s["ci_low"] for y, (_, s) in zip(ys, rows, strict=True)],
                       [s["ci_high"] - y for y, (_, s) in zip(ys, rows, strict=True)]]
            auc = res["auc"]["value"]
            tag = f" (AUC {auc:.2f})" if ax is a1 and auc is not None else ""
            ax.errorbar([t for t, _ in rows], ys, yerr=err, marker="o", capsize=3, label=name + tag)
    for name, rows in curves.items():
        steps = [r["step"] for r in rows]
        line, = a3.plot(steps, [r["reward_cut"] for r in rows], marker=".", label=f"{name}: reward when cut")
        a3.plot(steps, [r["cut_share"] for r in rows], linestyle="--", color=line.get_color(),
                label=f"{name}: share cut")
        a4.plot(steps, [r["thinking_tokens"] for r in rows], marker=".", label=name)
    for ax in (a1, a2):
        ax.axvline(t_star, color="grey", linestyle=":", label=f"training t* = {t_star}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(f"thinking budget t (tokens; {UNCONSTRAINED} = unconstrained)")
        ax.set_ylim(-0.02, 1.02)
    a1.set_ylabel("accuracy (95% CI over problems)")
    a2.set_ylabel("accuracy of samples whose thinking was cut")
    a2.set_title(f"budgets with >= {MIN_CUT_SAMPLES} cut samples", fontsize=9)
    a3.set_xlabel("GRPO step")
    a3.set_ylabel("mean over seeds")
    a3.set_title("er/math_reward_cut_mean, er/math_cut_share", fontsize=9)
    a4.set_xlabel("GRPO step")
    a4.set_ylabel("thinking tokens (er/math_thinking_tokens_mean)")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Run every seed; print the tables; write results.json and the plot."""
    args = parse_args(argv)
    out = (REPO / args.out) if not Path(args.out).is_absolute() else Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    if args.prepare_only:
        for seed in args.seed_list:
            prepare(args, out / f"seed{seed}", seed)
        return 0
    from er_env.rewards import MathReward
    from trainers.config import load_recipe

    cfg = load_recipe(args.recipe)
    if args.report_only:
        saved = json.loads((out / "results.json").read_text())
        png = plot(saved["pooled"], saved["training_curves_mean"], saved["t_star"],
                   Path(args.plot) if args.plot else out / "er_cut.png")
        print(markdown(saved["pooled"], {int(k): v for k, v in saved["per_seed"].items()}, saved["t_star"]))
        print(f"redrew {png}")
        return 0
    reward = MathReward(timeout_s=30.0)  # a loaded shared machine must not turn slow checks into wrong answers
    runs = {}
    for seed in args.seed_list:
        runs[seed] = run_seed(args, out / f"seed{seed}", seed, cfg, reward)
        for name, by_t in runs[seed]["rows"].items():  # progress: one line per model as each seed finishes
            s = summarize_rows(by_t)
            cells = ", ".join(f"t={t}: {_fmt(c['pass_at_1'], digits=2)} (cut {_fmt(c['accuracy_cut'], digits=2)})"
                              for t, c in s["budgets"].items())
            print(f"[seed {seed}] {name}: {cells}; AUC {_fmt(s['auc']['value'])}", flush=True)
    names = list(runs[args.seed_list[0]]["rows"])
    per_seed = {seed: {n: summarize_rows(r["rows"][n]) for n in names} for seed, r in runs.items()}
    pooled = {n: summarize_rows({t: [row for r in runs.values() for row in r["rows"][n][t]]
                                 for t in args.budget_list}) for n in names}
    curves = {n: mean_curves([r["curves"][n] for r in runs.values()]) for n in names if n != "start"}
    result = {"recipe": str(args.recipe), "t_star": cfg.think_budget_tokens, "seeds": args.seed_list,
              "solution_budget": cfg.solution_budget_tokens, "temperature": cfg.temperature,
              "eval_problems_per_seed": args.eval_problems, "samples": args.samples,
              "auc_definition": "trapezoid of accuracy over log2(t) for the constrained budgets, divided by "
                                "log2(t_max) - log2(t_min); 95% bootstrap CI over (seed, problem) units",
              "pooled": pooled, "per_seed": per_seed, "training_curves_mean": curves,
              "training_curves": {seed: r["curves"] for seed, r in runs.items()},
              "seconds": {seed: r["seconds"] for seed, r in runs.items()},
              "total_seconds": time.perf_counter() - t_all}
    (out / "results.json").write_text(json.dumps(result, indent=2))
    png = plot(pooled, curves, cfg.think_budget_tokens, Path(args.plot) if args.plot else out / "er_cut.png")
    print(markdown(pooled, per_seed, cfg.think_budget_tokens))
    for name, rows in curves.items():
        k = max(1, len(rows) // 4)

        def m(key: str, part: list[dict[str, float]]) -> float:
            vals = [r[key] for r in part if not math.isnan(r[key])]
            return statistics.fmean(vals) if vals else math.nan

        first, last = rows[:k], rows[-k:]
        print(f"{name} training (mean of {len(runs)} seeds, first {k} -> last {k} steps): reward "
              f"{m('reward', first):.3f} -> {m('reward', last):.3f}; reward when cut {m('reward_cut', first):.3f} -> "
              f"{m('reward_cut', last):.3f}; share cut {m('cut_share', first):.2f} -> {m('cut_share', last):.2f}; "
              f"thinking tokens {m('thinking_tokens', first):.1f} -> {m('thinking_tokens', last):.1f}")
    print(f"seeds {args.seed_list}; {args.eval_problems} held-out problems x {args.samples} samples per budget "
          f"and seed; times {result['seconds']}; total {result['total_seconds']:.0f} s; wrote "
          f"{out / 'results.json'} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
