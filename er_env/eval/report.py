"""Render an evaluation: ``results.json``, ``summary.md``, plots and Codeforces results files.

Everything is recomputed from the sample records (``DIR/samples.jsonl``), so
``er eval report DIR`` gives the same numbers as the run that wrote them. Cells
are grouped by settings key; a directory that holds several runs (other models,
budgets or sampling settings) shows each as its own rows, never mixed.

Files written into ``DIR``:

- ``results.json``: the config, one entry per cell (settings and metrics,
  :class:`er_env.eval.metrics.Summary`, accuracy when the thinking was cut and when
  not, with counts), one entry per curve (``"auc"``: a dataset x method's constrained
  budgets, the normalised area under pass@1 against ``log2(t)``,
  :class:`er_env.eval.metrics.BudgetAUC`) and every sample record;
- ``summary.md``: one Markdown table of cells per dataset, then its areas;
- ``plots/<dataset>.png``: pass@1 (95% CI) against mean sampled tokens, one line per
  method, and pass@1 against the thinking budget with the accuracy of cut samples
  dashed, the area in the legend (skipped with a warning where matplotlib is missing);
- ``codeforces/<method>_<budget>.json`` + ``codeforces/problem_ids.json``: the
  official results format (per problem, the 0/1 outcome of each graded sample) and
  the matching Codeforces problem ids, for ``er eval codeforces-rating``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from er_env.eval.metrics import AUC_AXIS, auc_summary, summarize

__all__ = ["cells", "curves", "markdown", "plot", "write_codeforces_results", "write_report"]


def _budget_text(settings: Mapping[str, Any]) -> str:
    t, s = settings.get("think_budget_tokens"), settings.get("solution_budget_tokens")
    return "none" if t is None else f"{t}:{s}"


def cells(rows: Iterable[Mapping[str, Any]], ks: Sequence[int] = (1,)) -> list[dict[str, Any]]:
    """Group sample records by settings key and summarize each group.

    Returns:
        ``[{"key", "settings", "dataset", "method", "budget", "summary"}]`` sorted by
        dataset, method and thinking budget.
    """
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(str(r["key"]), []).append(r)
    out = []
    for key, rs in groups.items():
        settings = dict(rs[0].get("settings") or {})
        n_max = max(sum(1 for x in rs if x["problem_id"] == pid) for pid in {x["problem_id"] for x in rs})
        summary = summarize(rs, [k for k in ks if k <= n_max] or [1])
        out.append({"key": key, "settings": settings, "dataset": rs[0].get("dataset"), "method": rs[0].get("method"),
                    "budget": _budget_text(settings), "summary": summary})
    big = float("inf")
    out.sort(key=lambda c: (str(c["dataset"]), str(c["method"]), c["settings"].get("think_budget_tokens") or big,
                            c["settings"].get("solution_budget_tokens") or big, c["key"]))
    return out


def curves(cell_list: Sequence[Mapping[str, Any]], rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One budget-accuracy curve per dataset x method (x other settings but the thinking budget), with its area.

    The cells of a curve share every setting except ``think_budget_tokens`` (so two
    solution budgets, models or sampling settings make two curves); unconstrained cells
    (``none``) are left out of the area (see :func:`er_env.eval.metrics.auc_summary`).

    Returns:
        ``[{"dataset", "method", "settings", "keys", "auc"}]`` (``settings`` without the
        thinking budget; ``auc`` a :class:`~er_env.eval.metrics.BudgetAUC`), in cell order.
    """
    by_key: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_key.setdefault(str(r["key"]), []).append(r)
    groups: dict[str, dict[str, Any]] = {}
    for c in cell_list:
        rest = {k: v for k, v in c["settings"].items() if k != "think_budget_tokens"}
        gid = json.dumps([c["dataset"], c["method"], rest], sort_keys=True, default=str)
        g = groups.setdefault(gid, {"dataset": c["dataset"], "method": c["method"], "settings": rest, "keys": [],
                                    "by_budget": {}})
        g["keys"].append(c["key"])
        t = c["settings"].get("think_budget_tokens")
        if t is not None:
            g["by_budget"][int(t)] = by_key.get(c["key"], [])
    out = []
    for g in groups.values():
        by_budget = g.pop("by_budget")
        auc = auc_summary(by_budget)
        if not by_budget:
            auc = dataclasses.replace(auc, reason="unconstrained only: the 'none' budget has no place on the "
                                                  "budget axis, so it enters no area")
        out.append({**g, "auc": auc})
    return out


def _auc_text(auc: Any) -> str:
    if auc.value is None:
        return f"— ({auc.reason})"
    return f"{auc.value:.3f} [{auc.ci_low:.3f}, {auc.ci_high:.3f}]"


def _pct(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _num(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.0f}"


def markdown(cell_list: Sequence[Mapping[str, Any]], curve_list: Sequence[Mapping[str, Any]] = ()) -> str:
    """One Markdown table per dataset (pass@ values in %), then the areas under its budget curves."""
    parts = []
    datasets = sorted({str(c["dataset"]) for c in cell_list})
    for ds in datasets:
        cs = [c for c in cell_list if str(c["dataset"]) == ds]
        ks = sorted({int(k) for c in cs for k in c["summary"].pass_at_k if int(k) > 1})
        model = {c["settings"].get("model") for c in cs}
        head = ["method", "budget t:s", "pass@1 [95% CI]", *[f"pass@{k}" for k in ks], "think", "solution",
                "total", "cut %", "acc. cut [95% CI] (correct/n)", "acc. not cut [95% CI] (correct/n)",
                "grader errors", "samples", "key"]
        lines = [f"### {ds} ({', '.join(sorted(str(m) for m in model))})", "", "| " + " | ".join(head) + " |",
                 "|" + "---|" * len(head)]
        for c in cs:
            s = c["summary"]
            ci = f"{_pct(s.pass_at_1)} [{_pct(s.ci_low)}, {_pct(s.ci_high)}]"
            row = [str(c["method"]), c["budget"], ci, *[_pct(s.pass_at_k.get(k, math.nan)) for k in ks],
                   _num(s.mean_thinking_tokens), _num(s.mean_solution_tokens), _num(s.mean_total_tokens),
                   _pct(s.share_cut), _side(s, "cut"), _side(s, "not_cut"), str(s.grader_errors), str(s.samples),
                   f"`{c['key']}`"]
            lines.append("| " + " | ".join(row) + " |")
        mine = [g for g in curve_list if str(g["dataset"]) == ds]
        if mine:
            lines += ["", f"Area under pass@1 vs thinking budget (trapezoid over {AUC_AXIS}(t), divided by the "
                      f"{AUC_AXIS} range of the budgets run: a constant accuracy a gives a; 'none' left out; 95% "
                      "bootstrap CI over problems):", "", "| method | budgets t | AUC [95% CI] | problems |",
                      "|---|---|---|---|"]
            for g in mine:
                a = g["auc"]
                lines.append(f"| {g['method']} | {', '.join(map(str, a.budgets)) or 'none'} | {_auc_text(a)} | "
                             f"{a.problems} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _side(s: Any, side: str) -> str:
    n, c = getattr(s, f"samples_{side}"), getattr(s, f"correct_{side}")
    if not n:
        return "— (0/0)"
    acc = getattr(s, f"accuracy_{side}")
    lo, hi = getattr(s, f"accuracy_{side}_ci_low"), getattr(s, f"accuracy_{side}_ci_high")
    return f"{_pct(acc)} [{_pct(lo)}, {_pct(hi)}] ({c}/{n})"


def plot(cell_list: Sequence[Mapping[str, Any]], directory: str | Path,
         curve_list: Sequence[Mapping[str, Any]] = ()) -> list[Path]:
    """One PNG per dataset (matplotlib, Agg backend): pass@1 vs tokens, and pass@1 vs the thinking budget.

    The right panel draws each curve of ``curve_list`` (:func:`curves`) on a log2 budget
    axis, the accuracy of its cut samples dashed, its area in the legend.

    Returns:
        The paths written.
    """
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(f"Plots need matplotlib ({exc}); install it: pip install matplotlib") from exc

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    by_key = {c["key"]: c for c in cell_list}
    paths = []
    for ds in sorted({str(c["dataset"]) for c in cell_list}):
        fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
        for method in sorted({str(c["method"]) for c in cell_list if str(c["dataset"]) == ds}):
            cs = [c for c in cell_list if str(c["dataset"]) == ds and str(c["method"]) == method
                  and not math.isnan(c["summary"].pass_at_1)]
            cs.sort(key=lambda c: c["summary"].mean_total_tokens)
            if not cs:
                continue
            x = [c["summary"].mean_total_tokens for c in cs]
            y = [100 * c["summary"].pass_at_1 for c in cs]
            err = [[100 * (c["summary"].pass_at_1 - c["summary"].ci_low) for c in cs],
                   [100 * (c["summary"].ci_high - c["summary"].pass_at_1) for c in cs]]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=method)
            for c, xi, yi in zip(cs, x, y, strict=True):
                ax.annotate(c["budget"], (xi, yi), fontsize=7, textcoords="offset points", xytext=(3, 3))
        for g in curve_list:
            cs = [by_key[k] for k in g["keys"] if k in by_key and by_key[k]["settings"].get("think_budget_tokens")]
            if str(g["dataset"]) != ds or not cs:
                continue
            cs.sort(key=lambda c: c["settings"]["think_budget_tokens"])
            ts = [c["settings"]["think_budget_tokens"] for c in cs]
            a = g["auc"]
            tag = f"AUC {a.value:.2f}" if a.value is not None else "no AUC"
            line, = bx.plot(ts, [100 * c["summary"].pass_at_1 for c in cs], marker="o", label=f"{g['method']} ({tag})")
            bx.plot(ts, [100 * c["summary"].accuracy_cut for c in cs], marker="x", linestyle="--",
                    color=line.get_color(), label=f"{g['method']}, when cut")
        tops = [100 * c["summary"].ci_high for c in cell_list if str(c["dataset"]) == ds
                and not math.isnan(c["summary"].ci_high)]
        for axis in (ax, bx):
            axis.set_ylim(0, min(100.0, max([5.0, *tops]) * 1.1))
            axis.set_ylabel("pass@1 (%)")
            axis.grid(alpha=0.3)
        ax.set_xlabel("mean sampled tokens per sample")
        ax.set_title(ds)
        ax.legend(fontsize=8)
        bx.set_xscale("log", base=2)
        bx.set_xlabel("thinking budget t (log2; 'none' not drawn)")
        bx.set_title(f"{ds}: accuracy vs budget (dashed: samples whose thinking was cut)", fontsize=9)
        if bx.lines:
            bx.legend(fontsize=7)
        fig.tight_layout()
        path = directory / f"{ds.replace('/', '_')}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def write_codeforces_results(rows: Iterable[Mapping[str, Any]], directory: str | Path) -> list[Path]:
    """Official-format results of every Codeforces cell (grader errors left out of the lists).

    Problem ``codeforces/<i>`` is entry ``i`` of :func:`~er_env.eval.codeforces.default_problem_ids`; only the
    problems evaluated are written, with ``problem_ids.json`` naming them in order.

    Returns:
        The results files written.
    """
    from er_env.eval.codeforces import default_problem_ids

    rows = [r for r in rows if str(r.get("dataset")) == "codeforces"]
    if not rows:
        return []
    ids = default_problem_ids()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    by_cell: dict[str, dict[int, list[tuple[int, int]]]] = {}
    names: dict[str, str] = {}
    for r in rows:
        index = int(str(r["problem_id"]).rsplit("/", 1)[-1])
        names[r["key"]] = f"{r['method']}_{_budget_text(r['settings']).replace(':', '-')}"
        outcomes = by_cell.setdefault(r["key"], {}).setdefault(index, [])
        if not r.get("is_error"):
            outcomes.append((int(r["sample_index"]), 1 if r.get("correct") else 0))
    written = []
    order = sorted({i for cell in by_cell.values() for i in cell})
    (directory / "problem_ids.json").write_text(json.dumps([ids[i] for i in order]), encoding="utf-8")
    for key, cell in by_cell.items():
        results = [[v for _, v in sorted(cell.get(i, []))] for i in order]
        path = directory / f"{names[key]}.json"
        path.write_text(json.dumps(results), encoding="utf-8")
        written.append(path)
    return written


def write_report(directory: str | Path, rows: Sequence[Mapping[str, Any]], ks: Sequence[int] = (1,),
                 config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write ``results.json``, ``summary.md``, plots and Codeforces results for ``rows``.

    Returns:
        The ``results.json`` content.
    """
    directory = Path(directory)
    rows = list(rows)
    cs = cells(rows, ks)
    cv = curves(cs, rows)
    md = markdown(cs, cv) if cs else "No samples.\n"
    (directory / "summary.md").write_text(md, encoding="utf-8")
    plots, plot_error = [], None
    try:
        plots = plot(cs, directory / "plots", cv) if cs else []
    except ImportError as exc:  # the numbers are written anyway; `er eval report DIR` can draw them later
        plot_error = str(exc)
        warnings.warn(f"No plots written: {exc}", stacklevel=2)
    cf = write_codeforces_results(rows, directory / "codeforces")
    results = {
        "config": dict(config or {}),
        "cells": [{**{k: v for k, v in c.items() if k != "summary"}, "summary": c["summary"].to_dict()} for c in cs],
        "auc": [{**{k: v for k, v in g.items() if k != "auc"}, "auc": g["auc"].to_dict()} for g in cv],
        "auc_definition": (f"trapezoid of pass@1 over {AUC_AXIS}(thinking budget t), divided by the {AUC_AXIS} range "
                           "of the budgets run (constant accuracy a -> a); unconstrained budgets excluded; 95% "
                           "bootstrap CI over problems"),
        "plots": [str(p.relative_to(directory)) for p in plots],
        "plots_error": plot_error,
        "codeforces_results": [str(p.relative_to(directory)) for p in cf],
        "samples": list(rows),
    }
    (directory / "results.json").write_text(json.dumps(results, ensure_ascii=False), encoding="utf-8")
    results["markdown"] = md
    return results
