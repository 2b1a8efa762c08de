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
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["Summary", "bootstrap_ci", "pass_at_k", "summarize"]


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
    think = [float(r.get("thinking_tokens") or 0) for r in rows]
    sol = [float(r.get("solution_tokens") or 0) for r in rows]
    return Summary(
        samples=len(rows), problems=len(per_problem), pass_at_1=_mean(accuracy), ci_low=low, ci_high=high,
        pass_at_k=at_k, pass_at_k_problems=at_k_n, grader_errors=errors,
        problems_ungraded=len(per_problem) - len(graded), mean_thinking_tokens=_mean(think),
        mean_solution_tokens=_mean(sol), mean_total_tokens=_mean([a + b for a, b in zip(think, sol, strict=True)]),
        share_cut=_mean([1.0 if r.get("cut", r.get("thinking_truncated")) else 0.0 for r in rows]),
    )
