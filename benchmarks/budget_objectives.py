r"""Budget objectives side by side on the issue-22 miniature (CPU): plain GRPO, ER at t*, a prior, anytime.

Every arm starts from the same fine-tuned model and problems of a seed
(:func:`benchmarks.er_cut.prepare`), trains with ``er train`` on the recipe
``trainers/recipes/er_cut_cpu.yaml`` changed only in its budget fields, and is evaluated
exactly as ``benchmarks/er_cut.py`` evaluates (budget-accuracy curve on ``--budgets``,
normalised area, accuracy when cut / not cut, unconstrained accuracy and thinking length,
via :mod:`er_env.eval.metrics`)::

    python benchmarks/budget_objectives.py                     # 3 seeds, all arms
    python benchmarks/budget_objectives.py --seeds 0 --arms er-fixed,anytime
    python benchmarks/budget_objectives.py --plot-only --out runs/budget-objectives   # redraw from results.json

Arms (recipe overrides; the rest of the recipe is shared):

* ``plain-grpo``: ``think_budget_tokens: 256`` (no binding budget; the control).
* ``er-fixed``: the recipe's t* (40): Elastic Reasoning.
* ``er-prior``: ``think_budget_tokens: {log_uniform: [16, 64]}``, one budget per group.
* ``anytime``: the same prior, ``anytime_cuts: 4``, ``anytime_solutions: 1`` (2 passes per group
  of 8), TRL's group baseline.
* ``anytime-percut``: the same, with ``advantage_baseline: budget`` (a baseline per cut, as
  AnytimeReasoner's BRPO).
* ``subgroups``: the same prior, ``budget_subgroups: 2`` (HBPO's layout: two sub-groups of 4
  under two distinct budgets per group) with ``advantage_baseline: budget``.
* ``er-prior-32-64``, ``anytime-percut-32-64``: ``er-prior`` and ``anytime-percut`` over
  ``{log_uniform: [32, 64]}``, budgets the miniature's traces can be answered from (not in the
  default ``--arms``; run them with ``--arms er-fixed,er-prior-32-64,anytime-percut-32-64``).

Compute: every arm runs the recipe's number of GRPO steps with the same number of
completions per step, unless ``--equal-tokens``. The script reports each arm's
*generated tokens* (what the engine sampled: ``er/generated_tokens``, summed over steps;
anytime rollouts sample a shared thinking pass once), *completion tokens* trained on
(TRL's mean completion length x completions) and wall time. ``--equal-tokens`` rescales
every arm's ``max_steps`` so that its expected generated tokens match the ``er-fixed``
arm's at the recipe's steps, using the generated tokens per step each arm showed in a
short probe run of ``--probe-steps`` steps.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import er_cut as ec  # noqa: E402  (after the path fix)
from benchmarks import er_effect as fx  # noqa: E402

ARMS: dict[str, dict[str, Any]] = {
    "plain-grpo": {"think_budget_tokens": 256},
    "er-fixed": {},
    "er-prior": {"think_budget_tokens": {"log_uniform": [16, 64]}},
    "anytime": {"think_budget_tokens": {"log_uniform": [16, 64]}, "anytime_cuts": 4, "anytime_solutions": 1},
    "anytime-percut": {"think_budget_tokens": {"log_uniform": [16, 64]}, "anytime_cuts": 4, "anytime_solutions": 1,
                       "advantage_baseline": "budget"},
    "subgroups": {"think_budget_tokens": {"log_uniform": [16, 64]}, "budget_subgroups": 2,
                  "advantage_baseline": "budget"},
    # the same two multi-budget objectives over budgets the miniature's traces can be answered from (>= 32)
    "er-prior-32-64": {"think_budget_tokens": {"log_uniform": [32, 64]}},
    "anytime-percut-32-64": {"think_budget_tokens": {"log_uniform": [32, 64]}, "anytime_cuts": 4,
                             "anytime_solutions": 1, "advantage_baseline": "budget"},
}

#: the arms run by default (the issue's comparison); the answerable-prior arms are a follow-up
DEFAULT_ARMS = ("plain-grpo", "er-fixed", "er-prior", "anytime", "anytime-percut", "subgroups")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (the problem/start-model options are er_cut.py's)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/budget-objectives", help="Output directory.")
    p.add_argument("--recipe", default=str(ec.RECIPE), help="Base recipe (default: er_cut_cpu.yaml).")
    p.add_argument("--seeds", default="0,1,2", help="Seeds (comma list).")
    p.add_argument("--arms", default=",".join(DEFAULT_ARMS), help=f"Arms (comma list of {', '.join(ARMS)}).")
    p.add_argument("--max-steps", type=int, default=None, help="GRPO steps per arm (default: the recipe's).")
    p.add_argument("--equal-tokens", action="store_true",
                   help="Rescale max_steps to equal generated tokens (er/generated_tokens).")
    p.add_argument("--probe-steps", type=int, default=3, help="Steps of the probe run for --equal-tokens.")
    p.add_argument("--train-problems", type=int, default=550, help="Fine-tuning and GRPO problems.")
    p.add_argument("--eval-problems", type=int, default=100, help="Held-out evaluation problems.")
    p.add_argument("--sft-copies", type=int, default=3, help="Fine-tuning documents per training problem.")
    p.add_argument("--start-steps", type=int, default=None, help="Fine-tuning steps of the start model.")
    p.add_argument("--budgets", default="16,24,32,40,48,64,96,256", help="Thinking budgets to evaluate.")
    p.add_argument("--samples", type=int, default=4, help="Samples per problem and budget.")
    p.add_argument("--fresh", action="store_true", help="Redo every stage even if its output exists.")
    p.add_argument("--plot", default=None, help="Figure path (default: <out>/budget_objectives.png).")
    p.add_argument("--plot-only", action="store_true",
                   help="Redraw the figure from <out>/results.json and the runs' logs; train and evaluate nothing.")
    args = p.parse_args(argv)
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    args.budget_list = sorted(int(t) for t in args.budgets.split(","))
    args.arm_list = [a for a in args.arms.split(",") if a]
    bad = [a for a in args.arm_list if a not in ARMS]
    if bad:
        p.error(f"--arms: unknown arm(s) {bad}; choose from {list(ARMS)}.")
    return args


def arm_recipe(base: Path, arm: str, out: Path, max_steps: int | None) -> Path:
    """The base recipe with the arm's budget fields (and steps), validated, written under ``out``."""
    import yaml

    from trainers.config import load_recipe

    data = yaml.safe_load(base.read_text(encoding="utf-8"))
    data.update(ARMS[arm])
    if max_steps is not None:
        data["grpo"] = {**data["grpo"], "max_steps": max_steps, "save_steps": max_steps}
    path = out / f"{arm}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    load_recipe(path, {"model": "tiny", "dataset": "embedded:math"})  # refuse a bad arm before any training
    return path


def completion_tokens(ckpt: Path, per_step: int) -> float:
    """Completion tokens trained on: TRL's mean completion length x completions per step, summed over steps."""
    state = json.loads((ckpt / "trainer_state.json").read_text())
    return sum(h["completions/mean_length"] * per_step for h in state["log_history"] if "completions/mean_length" in h)


def generated_tokens(ckpt: Path) -> float:
    """Tokens the engine sampled: ``er/generated_tokens`` summed over steps (one process, one generation per step)."""
    state = json.loads((ckpt / "trainer_state.json").read_text())
    return sum(h["er/generated_tokens"] for h in state["log_history"] if "er/generated_tokens" in h)


def plot_results(out: Path, results: dict[str, Any], t_star: int, path: Path) -> Path:
    """The budget-accuracy curves of every arm (pooled seeds) and their training curves (seed means)."""
    curves = {}
    for arm in results["pooled"]:
        runs = [fx.latest_checkpoint(out / f"seed{s}" / arm) for s in results["seeds"]]
        runs = [r for r in runs if r is not None]
        if runs:
            curves[arm] = ec.mean_curves([ec.training_curve(Path(r)) for r in runs])
    return ec.plot(results["pooled"], curves, t_star, path, title="Budget objectives side by side on the "
                   "answering-when-cut miniature (tiny model, CPU, seeds pooled)")


def main(argv: Sequence[str] | None = None) -> int:
    """Train and evaluate every arm of every seed; print the tables; write results.json."""
    args = parse_args(argv)
    out = (REPO / args.out) if not Path(args.out).is_absolute() else Path(args.out)
    figure = Path(args.plot) if args.plot else out / "budget_objectives.png"
    if args.plot_only:
        from trainers.config import load_recipe

        results = json.loads((out / "results.json").read_text())
        print(plot_results(out, results, int(load_recipe(args.recipe).think_budget_max), figure))
        return 0
    from er_env.data import load_problems
    from er_env.rewards import MathReward
    from trainers.config import load_recipe

    cfg = load_recipe(args.recipe)
    per_step = int(cfg.grpo.get("per_device_train_batch_size", 8))
    reward = MathReward(timeout_s=30.0)
    rows: dict[str, dict[int, list[dict[str, Any]]]] = {a: {t: [] for t in args.budget_list} for a in args.arm_list}
    cost: dict[str, dict[int, dict[str, float]]] = {a: {} for a in args.arm_list}
    for seed in args.seed_list:
        sdir = out / f"seed{seed}"
        train_path, eval_path, start = ec.prepare(args, sdir, seed)
        problems = load_problems(str(eval_path))
        steps = {a: args.max_steps for a in args.arm_list}
        if args.equal_tokens:
            rate = {}
            for arm in args.arm_list:
                probe = argparse.Namespace(**{**vars(args), "recipe": str(arm_recipe(
                    Path(args.recipe), arm, sdir / "probe", args.probe_steps))})
                ckpt, _ = fx.train_run(probe, f"probe-{arm}", start, train_path, sdir, ["--seed", str(seed)])
                rate[arm] = generated_tokens(ckpt) / args.probe_steps
            base_steps = args.max_steps or int(cfg.grpo.get("max_steps", 24))
            target = rate.get("er-fixed", next(iter(rate.values()))) * base_steps
            steps = {a: max(1, round(target / rate[a])) for a in args.arm_list}
        for arm in args.arm_list:
            run_args = argparse.Namespace(**{**vars(args), "recipe": str(arm_recipe(
                Path(args.recipe), arm, sdir / "recipes", steps[arm]))})
            t0 = time.perf_counter()
            ckpt, wall = fx.train_run(run_args, arm, start, train_path, sdir, ["--seed", str(seed)])
            ev = fx.evaluate(ckpt, problems, args.budget_list, cfg.solution_budget_tokens, args.samples,
                             cfg.temperature, seed, reward)
            for t, recs in ev.items():
                rows[arm][t] += ec.rows_of(recs, seed)
            cost[arm][seed] = {"train_seconds": wall, "total_seconds": time.perf_counter() - t0,
                               "completion_tokens": completion_tokens(ckpt, per_step),
                               "generated_tokens": generated_tokens(ckpt),
                               "steps": float(steps[arm] or cfg.grpo.get("max_steps", 0))}
            print(f"[seed {seed}] {arm}: {cost[arm][seed]}", flush=True)
    pooled = {a: ec.summarize_rows(rows[a]) for a in args.arm_list}
    print(ec.markdown(pooled, {}, int(cfg.think_budget_max)))
    print("\n| arm | seeds | steps | generated tokens (mean per seed) | completion tokens trained (mean per seed) "
          "| train wall s (mean per seed) |")
    print("|---|---:|---:|---:|---:|---:|")
    for a in args.arm_list:
        c = list(cost[a].values())

        def mean(key: str, c: list[dict[str, float]] = c) -> float:
            return sum(x[key] for x in c) / len(c)

        print(f"| {a} | {len(c)} | {mean('steps'):.0f} | {mean('generated_tokens'):.0f} | "
              f"{mean('completion_tokens'):.0f} | {mean('train_seconds'):.0f} |")
    results = {"arms": {a: ARMS[a] for a in args.arm_list}, "seeds": args.seed_list, "pooled": pooled, "cost": cost}
    previous = out / "results.json"
    if previous.is_file():  # keep the other arms of an earlier run over the same seeds
        old = json.loads(previous.read_text())
        if old.get("seeds") == args.seed_list:
            for key in ("arms", "pooled", "cost"):
                results[key] = {**{a: v for a, v in old[key].items() if a not in results[key]}, **results[key]}
    previous.write_text(json.dumps(results, indent=2, default=str))
    print(f"figure: {plot_results(out, results, int(cfg.think_budget_max), figure)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
