"""Accuracy and token statistics of an evaluation (stdlib only).

- **pass@1**: the mean, over problems, of each problem's share of correct samples
  (with one sample per problem it is plain accuracy). Its 95% confidence interval
  is a percentile bootstrap over *problems* (the unit that varies between
  benchmarks; AIME has only 30), with a fixed seed so reports are reproducible.
- **pass@k**: the unbiased estimator of Chen et al. 2021 ("Evaluating Large
  Language Models Trained on Code", arXiv 2107.03374): with ``n`` graded samples of
  which ``c`` are correct, ``pass@k = 1 - C(n - c, k) / C(n, k)``, averaged over
  problems; problems with fewer than ``k`` graded samples are left out (and counted).
- **Grader errors** (``is_error``: the sandbox or checker failed) are never counted
  as wrong: such a sample is dropped from the problem's ``n``; a problem whose
  samples all failed to grade is dropped from the means and counted in
  ``problems_ungraded``.
- **Tokens**: means over all samples of the thinking, solution and total tokens the
  policy sampled (forced tokens excluded); ``share_cut`` is the share of samples
  whose thinking was cut by the budget (the record's ``cut``: ``</think>`` forced, or,
  for one-pass methods, the cap reached before the thinking closed; records without
  ``cut`` use ``thinking_truncated``).
- **Accuracy when cut / not cut**: the graded samples of a cell split by ``cut``;
  on each side the share correct (correct samples / graded samples, pooled over
  problems: an estimate of P(correct | cut)), with both counts, and a 95% bootstrap
  interval that resamples *problems* (each problem's samples stay together). A side
  with no graded sample has accuracy ``nan`` (shown as "—").
- **Area under the budget-accuracy curve** (:func:`budget_auc`, :func:`auc_summary`):
  pass@1 against the thinking budget ``t`` on a log2 axis, integrated with the
  trapezoid rule over the budgets run and divided by the axis range
  ``log2(t_max) - log2(t_min)``; a constant accuracy ``a`` gives ``a``, and it stays in
  ``[0, 1]``. The unconstrained budget (``none``) has no place on that axis and is left
  out (its accuracy is its own cell). Fewer than two constrained budgets: no area; the
  result says so (:attr:`BudgetAUC.reason`) instead of giving a number. Its 95%
  interval resamples problems once per bootstrap draw for all budgets together
  (paired: a problem easy at one budget is easy at all).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["AUC_AXIS", "BudgetAUC", "Summary", "auc_summary", "bootstrap_ci", "budget_auc", "pass_at_k", "ratio_ci",
           "summarize"]

#: the budget axis of :func:`budget_auc`: thinking budgets are usually spaced geometrically (1K, 2K, 4K...)
AUC_AXIS = "log2"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem (Chen et al. 2021).

    Args:
        n: graded samples.
        c: correct samples among them.
        k: the k of pass@k, ``1 <= k <= n``.

    Returns:
        ``1 - C(n-c, k) / C(n, k)``.

    Raises:
        ValueError: ``k`` outside ``[1, n]`` or ``c`` outside ``[0, n]``.

    >>> pass_at_k(5, 0, 2), pass_at_k(5, 5, 2), round(pass_at_k(4, 1, 2), 4)
    (0.0, 1.0, 0.5)
    """
    if not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n, got k={k}, n={n}.")
    if not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n, got c={c}, n={n}.")
    if n - c < k:
        return 1.0
    # product form of C(n-c, k) / C(n, k), numerically stable for large n
    prob_all_wrong = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_wrong *= 1.0 - k / i
    return 1.0 - prob_all_wrong


def bootstrap_ci(values: Sequence[float], *, level: float = 0.95, resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``.

    Args:
        values: one value per problem.
        level: coverage of the interval.
        resamples: bootstrap resamples.
        seed: RNG seed (fixed: the same data gives the same interval).

    Returns:
        ``(low, high)``; ``(nan, nan)`` for no values.
    """
    if not values:
        return math.nan, math.nan
    if len(values) == 1:
        return float(values[0]), float(values[0])
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    lo_i = int(math.floor((1 - level) / 2 * (resamples - 1)))
    hi_i = int(math.ceil((1 + level) / 2 * (resamples - 1)))
    return means[lo_i], means[hi_i]


@dataclass(frozen=True)
class Summary:
    """Metrics of one (dataset, method, budget) cell.

    Attributes:
        samples: samples in the cell.
        problems: distinct problems.
        pass_at_1: mean per-problem accuracy over graded samples (``nan`` if none).
        ci_low: lower end of the 95% bootstrap interval of ``pass_at_1``.
        ci_high: upper end.
        pass_at_k: ``{k: unbiased pass@k}`` for each requested k that some problem supports.
        pass_at_k_problems: ``{k: problems with >= k graded samples}``.
        grader_errors: samples whose grader failed (left out, never counted wrong).
        problems_ungraded: problems with no graded sample.
        mean_thinking_tokens: mean sampled thinking tokens.
        mean_solution_tokens: mean sampled solution tokens.
        mean_total_tokens: mean sampled tokens (thinking + solution).
        share_cut: share of samples whose thinking the budget cut.
        samples_cut: graded samples whose thinking was cut.
        correct_cut: correct samples among them.
        accuracy_cut: ``correct_cut / samples_cut`` (``nan`` if none was cut).
        accuracy_cut_ci_low: lower end of its 95% bootstrap interval (over problems).
        accuracy_cut_ci_high: upper end.
        samples_not_cut: graded samples whose thinking was not cut.
        correct_not_cut: correct samples among them.
        accuracy_not_cut: ``correct_not_cut / samples_not_cut`` (``nan`` if none).
        accuracy_not_cut_ci_low: lower end of its 95% bootstrap interval.
        accuracy_not_cut_ci_high: upper end.
    """

    samples: int
    problems: int
    pass_at_1: float
    ci_low: float
    ci_high: float
    pass_at_k: Mapping[int, float] = field(default_factory=dict)
    pass_at_k_problems: Mapping[int, int] = field(default_factory=dict)
    grader_errors: int = 0
    problems_ungraded: int = 0
    mean_thinking_tokens: float = math.nan
    mean_solution_tokens: float = math.nan
    mean_total_tokens: float = math.nan
    share_cut: float = math.nan
    samples_cut: int = 0
    correct_cut: int = 0
    accuracy_cut: float = math.nan
    accuracy_cut_ci_low: float = math.nan
    accuracy_cut_ci_high: float = math.nan
    samples_not_cut: int = 0
    correct_not_cut: int = 0
    accuracy_not_cut: float = math.nan
    accuracy_not_cut_ci_low: float = math.nan
    accuracy_not_cut_ci_high: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (``nan`` -> ``None``, int keys -> strings)."""
        def clean(v: Any) -> Any:
            return None if isinstance(v, float) and not math.isfinite(v) else v

        out = {k: clean(getattr(self, k)) for k in self.__dataclass_fields__}
        out["pass_at_k"] = {str(k): clean(v) for k, v in self.pass_at_k.items()}
        out["pass_at_k_problems"] = {str(k): v for k, v in self.pass_at_k_problems.items()}
        return out


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def summarize(samples: Iterable[Mapping[str, Any]], ks: Sequence[int] = (1,)) -> Summary:
    """Metrics of one cell from its sample records.

    Args:
        samples: records with ``problem_id``, ``is_error``, ``correct``,
            ``thinking_tokens``, ``solution_tokens`` and ``cut`` (or ``thinking_truncated``).
        ks: the k values of pass@k.

    Returns:
        The :class:`Summary`.

    Raises:
        ValueError: a k below 1.
    """
    if any(k < 1 for k in ks):
        raise ValueError(f"pass@k values must be >= 1, got {list(ks)}.")
    rows = list(samples)
    per_problem: dict[str, list[bool]] = {}
    errors = 0
    for r in rows:
        outcomes = per_problem.setdefault(str(r["problem_id"]), [])
        if r.get("is_error"):
            errors += 1
            continue
        outcomes.append(bool(r.get("correct")))
    graded = {pid: o for pid, o in per_problem.items() if o}
    accuracy = [sum(o) / len(o) for o in graded.values()]
    low, high = bootstrap_ci(accuracy)
    at_k: dict[int, float] = {}
    at_k_n: dict[int, int] = {}
    for k in ks:
        vals = [pass_at_k(len(o), sum(o), k) for o in graded.values() if len(o) >= k]
        at_k_n[k] = len(vals)
        if vals:
            at_k[k] = _mean(vals)
    split = _cut_split(rows)
    think = [float(r.get("thinking_tokens") or 0) for r in rows]
    sol = [float(r.get("solution_tokens") or 0) for r in rows]
    return Summary(
        samples=len(rows), problems=len(per_problem), pass_at_1=_mean(accuracy), ci_low=low, ci_high=high,
        pass_at_k=at_k, pass_at_k_problems=at_k_n, grader_errors=errors,
        problems_ungraded=len(per_problem) - len(graded), mean_thinking_tokens=_mean(think),
        mean_solution_tokens=_mean(sol), mean_total_tokens=_mean([a + b for a, b in zip(think, sol, strict=True)]),
        share_cut=_mean([1.0 if _is_cut(r) else 0.0 for r in rows]), **split,
    )


def _is_cut(row: Mapping[str, Any]) -> bool:
    return bool(row.get("cut", row.get("thinking_truncated")))


def ratio_ci(counts: Sequence[tuple[int, int]], *, level: float = 0.95, resamples: int = 2000,
             seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``sum(correct) / sum(n)``, resampling the ``(correct, n)`` units.

    Args:
        counts: one ``(correct, n)`` pair per problem, ``n >= 1``.
        level: coverage of the interval.
        resamples: bootstrap resamples.
        seed: RNG seed.

    Returns:
        ``(low, high)``; ``(nan, nan)`` for no units.

    >>> ratio_ci([(1, 1)] * 5)
    (1.0, 1.0)
    """
    if not counts:
        return math.nan, math.nan
    rng = random.Random(seed)
    k = len(counts)
    ratios = []
    for _ in range(resamples):
        c = n = 0
        for _ in range(k):
            ci, ni = counts[rng.randrange(k)]
            c, n = c + ci, n + ni
        ratios.append(c / n)
    ratios.sort()
    return (ratios[int(math.floor((1 - level) / 2 * (resamples - 1)))],
            ratios[int(math.ceil((1 + level) / 2 * (resamples - 1)))])


def _cut_split(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Accuracy of the graded samples whose thinking was cut, and of the others, with counts and CIs."""
    out: dict[str, Any] = {}
    for side, want in (("cut", True), ("not_cut", False)):
        per_problem: dict[str, list[int]] = {}
        for r in rows:
            if r.get("is_error") or _is_cut(r) != want:
                continue
            c_n = per_problem.setdefault(str(r["problem_id"]), [0, 0])
            c_n[0] += 1 if r.get("correct") else 0
            c_n[1] += 1
        correct, n = sum(c for c, _ in per_problem.values()), sum(m for _, m in per_problem.values())
        low, high = ratio_ci([(c, m) for c, m in per_problem.values()])
        out.update({f"samples_{side}": n, f"correct_{side}": correct,
                    f"accuracy_{side}": correct / n if n else math.nan, f"accuracy_{side}_ci_low": low,
                    f"accuracy_{side}_ci_high": high})
    return out


def _axis(t: float) -> float:
    return math.log2(t)


def budget_auc(points: Sequence[tuple[float, float]]) -> float:
    """Normalised area under a budget-accuracy curve.

    Trapezoid rule over ``log2(t)``, divided by ``log2(t_max) - log2(t_min)``, so a
    constant accuracy ``a`` gives ``a``.

    Args:
        points: ``(thinking budget t > 0, accuracy)`` pairs, one per budget, any order.

    Returns:
        The normalised area.

    Raises:
        ValueError: fewer than two distinct budgets, a budget repeated, a budget <= 0,
            or an accuracy that is not a finite number.

    >>> budget_auc([(1024, 0.5), (4096, 0.5)])
    0.5
    >>> budget_auc([(1, 0.0), (2, 1.0), (8, 1.0)])  # log2 axis: 0 -> 1 over [0, 1], 1 over [1, 3]
    0.8333333333333334
    """
    pts = sorted((float(t), float(a)) for t, a in points)
    ts = [t for t, _ in pts]
    if any(t <= 0 for t in ts):
        raise ValueError(f"Thinking budgets must be > 0 for a log2 axis, got {ts}.")
    if len(set(ts)) != len(ts):
        raise ValueError(f"Each budget may appear once in a curve, got {ts}.")
    if len(ts) < 2:
        raise ValueError(f"An area needs at least two budgets, got {ts}.")
    if not all(math.isfinite(a) for _, a in pts):
        raise ValueError(f"Accuracies must be finite numbers, got {[a for _, a in pts]}.")
    xs = [_axis(t) for t in ts]
    ys = [a for _, a in pts]
    area = sum((xs[i + 1] - xs[i]) * (ys[i] + ys[i + 1]) / 2 for i in range(len(xs) - 1))
    return area / (xs[-1] - xs[0])


@dataclass(frozen=True)
class BudgetAUC:
    """The normalised area under one method's budget-accuracy curve (see :func:`budget_auc`).

    Attributes:
        value: the area in ``[0, 1]``, or ``None`` where there is none (see ``reason``).
        ci_low: lower end of its 95% bootstrap interval over problems (``None`` with ``value``).
        ci_high: upper end.
        budgets: the thinking budgets integrated over, ascending.
        problems: problems with a graded sample at some budget.
        axis: the budget axis (``"log2"``).
        reason: why there is no area (``value`` is ``None``), else ``None``.
    """

    value: float | None
    ci_low: float | None
    ci_high: float | None
    budgets: tuple[int, ...]
    problems: int
    axis: str = AUC_AXIS
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def auc_summary(by_budget: Mapping[int, Iterable[Mapping[str, Any]]], *, resamples: int = 2000,
                seed: int = 0) -> BudgetAUC:
    """The area under pass@1 against the thinking budget, with a bootstrap interval over problems.

    Args:
        by_budget: sample records (as for :func:`summarize`) per *constrained* thinking
            budget ``t``; the unconstrained budget does not belong here.
        resamples: bootstrap resamples.
        seed: RNG seed.

    Returns:
        A :class:`BudgetAUC`; with fewer than two budgets (or a budget with no graded
        sample) its ``value`` is ``None`` and ``reason`` says why.
    """
    per: dict[int, dict[str, list[bool]]] = {}
    for t, rows in by_budget.items():
        outcomes: dict[str, list[bool]] = {}
        for r in rows:
            if not r.get("is_error"):
                outcomes.setdefault(str(r["problem_id"]), []).append(bool(r.get("correct")))
        per[int(t)] = outcomes
    budgets = tuple(sorted(per))
    problems = sorted({pid for o in per.values() for pid in o})

    def absent(reason: str) -> BudgetAUC:
        return BudgetAUC(None, None, None, budgets, len(problems), reason=reason)

    if len(budgets) < 2:
        return absent(f"only one constrained thinking budget ({', '.join(map(str, budgets)) or 'none'}): a curve "
                      "needs at least two; run more budgets (e.g. --budgets 1024:1024,4096:1024)")
    empty = [t for t in budgets if not per[t]]
    if empty:
        return absent(f"no graded sample at thinking budget(s) {empty}")
    acc = {t: {pid: sum(o) / len(o) for pid, o in per[t].items()} for t in budgets}

    def area(sample: Sequence[str]) -> float:
        pts = []
        for t in budgets:
            vals = [acc[t][pid] for pid in sample if pid in acc[t]]
            pts.append((t, _mean(vals) if vals else 0.0))
        return budget_auc(pts)

    value = area(problems)
    rng = random.Random(seed)
    draws = sorted(area([problems[rng.randrange(len(problems))] for _ in problems]) for _ in range(resamples))
    return BudgetAUC(value, draws[int(math.floor(0.025 * (resamples - 1)))],
                     draws[int(math.ceil(0.975 * (resamples - 1)))], budgets, len(problems))
