"""pass@k, confidence intervals, grader errors and budget syntax."""

from __future__ import annotations

import itertools
import math

import pytest

from er_env.budget import Budget
from er_env.eval.config import EvalConfig, EvalError, parse_budgets
from er_env.eval.methods import MethodError, get_method
from er_env.eval.metrics import bootstrap_ci, pass_at_k, summarize


@pytest.mark.parametrize("n,c,k", [(5, 2, 1), (5, 2, 2), (6, 1, 3), (8, 3, 4), (4, 4, 2), (7, 0, 3), (10, 9, 9)])
def test_pass_at_k_is_the_exact_subset_probability(n, c, k):
    outcomes = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    exact = sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)
    assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)


def test_pass_at_k_rejects_bad_k():
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(3, 1, 4)


def _rows(outcomes, errors=()):
    rows = []
    for pid, outs in outcomes.items():
        for k, o in enumerate(outs):
            rows.append({"problem_id": pid, "sample_index": k, "correct": bool(o), "is_error": False,
                         "thinking_tokens": 10, "solution_tokens": 5, "thinking_truncated": k == 0})
    for pid in errors:
        rows.append({"problem_id": pid, "sample_index": 99, "correct": None, "is_error": True,
                     "thinking_tokens": 10, "solution_tokens": 5, "thinking_truncated": False})
    return rows


def test_summary_never_counts_grader_errors_as_wrong():
    clean = summarize(_rows({"a": [1, 1], "b": [0, 1]}), ks=[1, 2])
    with_errors = summarize(_rows({"a": [1, 1], "b": [0, 1]}, errors=["a", "a", "b"]), ks=[1, 2])
    assert clean.pass_at_1 == with_errors.pass_at_1 == 0.75
    assert with_errors.grader_errors == 3 and clean.grader_errors == 0
    assert with_errors.pass_at_k[2] == clean.pass_at_k[2] == 1.0
    only_errors = summarize(_rows({}, errors=["z"]) + _rows({"a": [1]}))
    assert only_errors.problems_ungraded == 1 and only_errors.pass_at_1 == 1.0


def test_summary_tokens_cut_and_ci():
    s = summarize(_rows({f"p{i}": [i % 2, 1, 0] for i in range(30)}), ks=[1, 3])
    assert s.samples == 90 and s.problems == 30
    assert s.mean_thinking_tokens == 10 and s.mean_total_tokens == 15
    assert s.share_cut == pytest.approx(1 / 3)
    assert s.ci_low < s.pass_at_1 < s.ci_high
    assert s.pass_at_k_problems[3] == 30
    one_pass = _rows({"a": [0, 0]})
    for r in one_pass:
        r["cut"] = True  # a one-pass method whose cap hit before </think>: cut, though nothing was forced
    assert summarize(one_pass).share_cut == 1.0
    again = summarize(_rows({f"p{i}": [i % 2, 1, 0] for i in range(30)}))
    assert (again.ci_low, again.ci_high) == (s.ci_low, s.ci_high)


def test_bootstrap_is_reproducible_and_sane():
    vals = [1.0] * 20 + [0.0] * 10
    lo, hi = bootstrap_ci(vals)
    assert (lo, hi) == bootstrap_ci(vals)
    assert lo < 2 / 3 < hi and 0.4 < lo and hi < 0.9
    assert bootstrap_ci([0.5]) == (0.5, 0.5)
    assert all(math.isnan(x) for x in bootstrap_ci([]))


def test_budget_syntax():
    assert parse_budgets("1024:1024, 2048:512,none") == [Budget(1024, 1024), Budget(2048, 512),
                                                           Budget.unconstrained()]
    assert parse_budgets("none", max_tokens=100) == [Budget.unconstrained(max_tokens=100)]
    for bad in ("1024", "1k:1k", "0:5", "1024:1024;2048:1024", ""):
        with pytest.raises(EvalError, match="T:S|must be > 0|empty"):
            parse_budgets(bad)
    with pytest.raises(EvalError, match="'1k:1k'.*'T:S'.*'none'"):
        parse_budgets("1k:1k")


def test_config_errors_quote_the_value(tmp_path):
    ok = dict(model="m", dataset="aime2024", out=str(tmp_path))
    with pytest.raises(MethodError, match="Unknown method 'elastc'. Did you mean 'elastic'"):
        EvalConfig(**ok, methods="elastic,elastc")
    with pytest.raises(EvalError, match="--backend openai needs --endpoint"):
        EvalConfig(**ok, backend="openai")
    with pytest.raises(EvalError, match="k > --samples 2"):
        EvalConfig(**ok, samples=2, pass_k="1,4")
    with pytest.raises(EvalError, match="--dataset is required"):
        EvalConfig(model="m", out="x")
    with pytest.raises(EvalError, match="Bad budget '5'"):
        EvalConfig(**ok, budgets="5")
    assert EvalConfig(**ok, samples=4).ks == [1, 4]
    with pytest.raises(MethodError, match="vllm_native.*needs the vllm backend"):
        get_method("vllm_native").check_backend(object())
