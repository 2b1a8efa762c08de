"""Accuracy when the thinking was cut / not cut, and the area under the budget-accuracy curve (issue 22)."""

from __future__ import annotations

import json
import math

import pytest

from er_env.eval.metrics import auc_summary, budget_auc, ratio_ci, summarize
from er_env.eval.report import write_report


def _sample(pid, k, correct, cut, *, t=64, method="elastic", error=False):
    settings = {"method": method, "think_budget_tokens": t, "solution_budget_tokens": None if t is None else 16,
                "model": "m"}
    return {"key": f"{method}-{t}", "settings": settings, "dataset": "sums", "method": method, "problem_id": pid,
            "sample_index": k, "correct": None if error else correct, "is_error": error, "cut": cut,
            "thinking_tokens": 10, "solution_tokens": 4}


# problem a: cut right, cut wrong, not cut right; b: cut wrong, not cut right, not cut wrong; c: not cut right;
# plus one grader error (cut) that must count on neither side
HAND = [_sample("a", 0, True, True), _sample("a", 1, False, True), _sample("a", 2, True, False),
        _sample("b", 0, False, True), _sample("b", 1, True, False), _sample("b", 2, False, False),
        _sample("c", 0, True, False), _sample("c", 1, None, True, error=True)]


def test_accuracy_when_cut_and_not_cut_exact_counts():
    s = summarize(HAND)
    assert (s.samples_cut, s.correct_cut, s.accuracy_cut) == (3, 1, pytest.approx(1 / 3))
    assert (s.samples_not_cut, s.correct_not_cut, s.accuracy_not_cut) == (4, 3, pytest.approx(3 / 4))
    assert s.accuracy_cut_ci_low <= s.accuracy_cut <= s.accuracy_cut_ci_high
    assert s.grader_errors == 1 and s.share_cut == pytest.approx(4 / 8)
    d = s.to_dict()
    assert d["samples_cut"] == 3 and d["accuracy_not_cut"] == pytest.approx(0.75)


def test_a_side_with_no_samples_has_no_accuracy():
    s = summarize([_sample("a", 0, True, False), _sample("b", 0, False, False)])
    assert s.samples_cut == 0 and math.isnan(s.accuracy_cut) and s.to_dict()["accuracy_cut"] is None
    assert s.accuracy_not_cut == 0.5


def test_ratio_ci_resamples_problems():
    assert ratio_ci([(1, 2)] * 10) == (0.5, 0.5)
    lo, hi = ratio_ci([(0, 1), (1, 1)] * 20)
    assert 0.25 < lo < 0.5 < hi < 0.75
    assert all(math.isnan(x) for x in ratio_ci([]))


def test_auc_of_known_curves():
    assert budget_auc([(16, 0.7), (64, 0.7), (256, 0.7)]) == pytest.approx(0.7)  # constant a -> a
    # linear in log2(t): accuracy = log2(t) / 10 on [1, 3] -> mean 0.2
    assert budget_auc([(2, 0.1), (8, 0.3), (4, 0.2)]) == pytest.approx(0.2)
    # a step: 0 at t=1, 1 from t=2 on, up to t=8: (0.5 * 1 + 1 * 2) / 3
    assert budget_auc([(1, 0.0), (2, 1.0), (8, 1.0)]) == pytest.approx(2.5 / 3)


@pytest.mark.parametrize("points,match", [([(8, 0.5)], "at least two"), ([(8, 0.5), (8, 0.6)], "once"),
                                          ([(0, 0.5), (8, 0.6)], "> 0"), ([(4, math.nan), (8, 0.6)], "finite")])
def test_auc_rejects_bad_curves(points, match):
    with pytest.raises(ValueError, match=match):
        budget_auc(points)


def test_auc_summary_value_and_paired_ci():
    rows = {16: [_sample(p, 0, p in "ab", True, t=16) for p in "abcd"],  # 0.5
            64: [_sample(p, 0, p != "d", False, t=64) for p in "abcd"],  # 0.75
            256: [_sample(p, 0, True, False, t=256) for p in "abcd"]}  # 1.0
    a = auc_summary(rows)
    assert a.value == pytest.approx(((0.5 + 0.75) / 2 * 2 + (0.75 + 1.0) / 2 * 2) / 4)
    assert a.budgets == (16, 64, 256) and a.problems == 4 and a.reason is None
    assert a.ci_low < a.value < a.ci_high
    same = auc_summary({t: [_sample(p, 0, True, False, t=t) for p in "abc"] for t in (8, 32)})
    assert (same.value, same.ci_low, same.ci_high) == (1.0, 1.0, 1.0)


def test_one_budget_gives_no_area_with_the_reason():
    a = auc_summary({64: [_sample("a", 0, True, False)]})
    assert a.value is None and a.ci_low is None and "only one constrained thinking budget (64)" in a.reason
    assert a.to_dict()["value"] is None


def test_report_writes_cut_columns_and_areas(tmp_path):
    rows = [dict(r) for r in HAND]
    rows += [{**_sample(p, 0, True, False, t=256), "cut": False} for p in "abc"]
    rows += [_sample(p, 0, True, False, t=64, method="single") for p in "ab"]
    rows += [_sample(p, 0, True, False, t=None, method="full") for p in "ab"]
    results = write_report(tmp_path, rows)
    cells = {c["key"]: c["summary"] for c in results["cells"]}
    assert cells["elastic-64"]["samples_cut"] == 3 and cells["elastic-64"]["correct_not_cut"] == 3
    on_disk = json.loads((tmp_path / "results.json").read_text())
    aucs = {g["method"]: g["auc"] for g in on_disk["auc"]}
    # elastic: pass@1 at 64 is the mean of a 2/3, b 1/3, c 1 = 2/3; at 256 it is 1
    assert aucs["elastic"]["value"] == pytest.approx((2 / 3 + 1) / 2) and aucs["elastic"]["budgets"] == [64, 256]
    assert aucs["single"]["value"] is None and "only one" in aucs["single"]["reason"]
    assert aucs["full"]["value"] is None and "unconstrained only" in aucs["full"]["reason"]
    assert "log2" in on_disk["auc_definition"]
    md = (tmp_path / "summary.md").read_text()
    assert "33.3 [" in md and "(1/3)" in md and "(3/4)" in md  # elastic at 64: accuracy when cut, counts
    assert "| elastic | 64, 256 | 0.833 [" in md and "| single | 64 | — (only one" in md
    assert (tmp_path / "plots" / "sums.png").read_bytes()[:4] == b"\x89PNG"
