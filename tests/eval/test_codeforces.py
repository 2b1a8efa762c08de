"""CodeElo rating (official cf_elo_calc.py method) on built snapshots in the Codeforces API format."""

from __future__ import annotations

import bisect
import json
import math

import httpx
import pytest

from er_env.eval.codeforces import (
    contest_rating,
    fetch_snapshot,
    load_snapshot,
    rate,
    default_problem_ids,
    default_ratings,
    sorted_ratings,
)
from er_env.eval.config import EvalError
from tests.eval.cf_snapshots import build_suite, write_contest


@pytest.fixture(scope="module")
def suite(shared_data, tmp_path_factory):  # rate() takes the 2024 distribution from the shared data
    root = tmp_path_factory.mktemp("cf")
    data = build_suite(root)
    return root, data


def _brute_rating(olds, rank):
    """Largest integer R in [0, max+100) whose Elo seed is >= rank, by linear scan (0 if none)."""
    best = 0
    for r in range(0, max(olds) + 100):
        if 1 + sum(1 / (1 + 10 ** ((r - o) / 400)) for o in olds) >= rank:
            best = r
    return best


def _rank(rows, score, penalty):
    return next((i for i, (pt, pen) in enumerate(rows) if pt < score or (pt == score and pen > penalty)), len(rows))


def test_default_data_comes_from_the_shared_data(shared_data):
    ids = default_problem_ids()
    assert len(ids) == 408 and ids[0] == "1971A"
    assert len(json.loads((shared_data / "code" / "codeforces_test.json").read_text())) == len(ids)  # index-aligned
    assert sum(default_ratings().values()) == 89352


def test_missing_shared_data_names_the_path_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("ER_SHARED_DATA", str(tmp_path))
    with pytest.raises(EvalError, match=r"codeforces_ratings_2024.json.*does not exist.*ER_SHARED_DATA.*--ratings"):
        default_ratings()
    with pytest.raises(EvalError, match=r"codeforces_problem_ids.json.*does not exist.*--problem-ids"):
        default_problem_ids()
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "codeforces_problem_ids.json").write_text("[1971A")
    with pytest.raises(EvalError, match="is not JSON"):
        default_problem_ids()


def test_closed_form_contest(suite):
    root, _ = suite
    standings, changes = load_snapshot(root, 1001)
    dist = sorted_ratings(default_ratings())
    got = contest_rating(1001, {"1001A": [1, 1, 0], "1001B": [0, 1, 1]}, standings, changes, dist, pass_n=1)
    # score 1, penalty 0: rank = first of the 1-point rows with penalty > 0 (row 167)
    assert (got.score, got.penalty, got.rank, got.participants) == (1, 0, 167, 250)
    # all 250 old ratings are 1500: 1 + 250 / (1 + 10^((R-1500)/400)) >= 167  <=>  R <= 1500 + 400 log10(250/166 - 1)
    assert got.rating == math.floor(1500 + 400 * math.log10(250 / 166 - 1)) == 1381
    assert got.percentile == round(bisect.bisect_left(dist, 1381.0) / len(dist) * 100, 1)


@pytest.mark.parametrize("pass_n", [1, 2, 3, None])
def test_points_and_penalty_against_brute_force(suite, pass_n):
    root, data = suite
    dist = sorted_ratings(default_ratings())
    status = dict(zip(data["problem_ids"], data["results"], strict=True))
    standings, changes = load_snapshot(root, 1002)
    got = contest_rating(1002, {k: v for k, v in status.items() if k.startswith("1002")}, standings, changes, dist,
                         pass_n)
    n = 3 if pass_n is None else pass_n
    # A first try: 500; B on the 3rd sample: 1000 - 100; C on the 2nd: 1500 - 50; D1 first try: 1250
    expected = 500 + 1250 + (1450 if n >= 2 else 0) + (900 if n >= 3 else 0)
    assert got.score == expected and got.penalty == 0
    rows = [(r["points"], r["penalty"]) for r in standings["rows"]]
    assert got.rank == _rank(rows, expected, 0)
    assert got.rating == _brute_rating([c["oldRating"] for c in changes], got.rank)


def test_skips_and_handle_filtering(suite):
    root, data = suite
    out = rate(data["results"], data["problem_ids"], root, pass_n=1)
    skipped = {s["contest_id"]: s["skipped"] for s in out["skipped"]}
    assert set(skipped) == {1003, 1004, 1006}
    assert "150" in skipped[1003] and "200" in skipped[1004] and "members" in skipped[1006]
    per = {c["contest_id"]: c for c in out["per_contest"]}
    assert set(per) == {1001, 1002, 1005} and out["contests"] == 3
    assert per[1005]["participants"] == 201  # 205 rows, 4 unrated handles dropped
    st, ch = load_snapshot(root, 1005)
    kept = [r for r in st["rows"] if r["party"]["members"][0]["handle"] in {c["handle"] for c in ch}]
    # 1005A wrong on the first sample, 1005B right: score 1, penalty 0 with pass@1
    assert (per[1005]["score"], per[1005]["penalty"]) == (1, 0)
    assert per[1005]["rank"] == _rank([(r["points"], r["penalty"]) for r in kept], 1, 0)
    assert per[1005]["rating"] == _brute_rating([c["oldRating"] for c in ch], per[1005]["rank"])
    dist = sorted_ratings(default_ratings())
    mean = sum(c["rating"] for c in out["per_contest"]) / 3
    assert out["rating"] == mean and out["percentile"] == round(bisect.bisect_left(dist, mean) / len(dist) * 100, 1)


def test_matches_official_script_numbers(suite):
    """Golden numbers: the official cf_elo_calc.py run offline on this very snapshot (requests stubbed)."""
    root, data = suite
    one = rate(data["results"], data["problem_ids"], root, pass_n=1)
    assert (one["rating"], one["percentile"], one["contests"]) == (1670.0, 89.0, 3)
    assert [(c["contest_id"], c["rating"], c["percentile"]) for c in one["per_contest"]] == [
        (1001, 1381, 72.1), (1002, 2096, 97.0), (1005, 1533, 82.4)]
    two = rate(data["results"], data["problem_ids"], root, pass_n=2)
    assert (round(two["rating"], 6), two["percentile"]) == (2333.333333, 99.0)
    assert [(c["contest_id"], c["rating"], c["percentile"]) for c in two["per_contest"]] == [
        (1001, 1599, 85.2), (1002, 3282, 100.0), (1005, 2119, 97.4)]


def test_bad_inputs_name_the_problem(suite, tmp_path):
    root, data = suite
    with pytest.raises(EvalError, match=r"'1006A' \(index 12\) has no result"):
        rate(data["results"][:-1], data["problem_ids"], root)
    with pytest.raises(EvalError, match="'9999A', which is not in the problem ids"):
        rate({"9999A": [1]}, data["problem_ids"], root)
    with pytest.raises(EvalError, match="no entry for problem '1001B'"):
        rate({"1001A": [1]}, data["problem_ids"][:2], root)
    with pytest.raises(EvalError, match="must be a list of 0/1"):
        rate([[1], [2]], ["1001A", "1001B"], root)
    with pytest.raises(EvalError, match="Bad Codeforces problem id 'abc'"):
        rate([[1]], ["abc"], root)
    with pytest.raises(EvalError, match=r"Missing standings snapshot .*4242.*standings.json"):
        rate([[1]], ["4242A"], tmp_path)
    bad = tmp_path / "7"
    write_contest(tmp_path, 7, olds=[1500] * 3, points=[1, 1, 1], penalties=[0] * 3, problems=[("A", None)])
    (bad / "rating_changes.json").write_text("{not json")
    with pytest.raises(EvalError, match=r"Malformed rating changes snapshot .*rating_changes.json"):
        rate([[1]], ["7A"], tmp_path)
    (bad / "rating_changes.json").write_text(json.dumps({"status": "FAILED", "comment": "contestId: not found"}))
    with pytest.raises(EvalError, match="not found"):
        rate([[1]], ["7A"], tmp_path)
    (bad / "rating_changes.json").write_text(json.dumps({"status": "OK", "result": [{"handle": "x"}]}))
    with pytest.raises(EvalError, match="oldRating"):
        rate([[1]], ["7A"], tmp_path)
    with pytest.raises(EvalError, match="pass_n must be >= 1"):
        rate(data["results"], data["problem_ids"], root, pass_n=0)


def test_cli_prints_json(suite, tmp_path, capsys):
    from er_cli import main

    root, data = suite
    (tmp_path / "r.json").write_text(json.dumps(data["results"]))
    (tmp_path / "p.json").write_text(json.dumps(data["problem_ids"]))
    assert main(["eval", "codeforces-rating", "--results", str(tmp_path / "r.json"), "--problem-ids",
                 str(tmp_path / "p.json"), "--contests", str(root), "--pass-n", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rating"] == 1670.0 and out["percentile"] == 89.0 and out["contests"] == 3
    assert len(out["per_contest"]) == 3
    assert main(["eval", "codeforces-rating", "--results", str(tmp_path / "r.json"), "--contests", str(root)]) == 1
    assert "problem ids" in capsys.readouterr().err  # 13 results vs the 408 default ids


def test_fetch_snapshot_offline_transport(tmp_path):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        if "ratingChanges" in str(request.url) and len(calls) < 3:
            return httpx.Response(503, json={"status": "FAILED", "comment": "busy"})
        return httpx.Response(200, json={"status": "OK", "result": {"rows": [], "problems": []}
                                         if "standings" in str(request.url) else []})

    written = fetch_snapshot([1971], tmp_path, transport=httpx.MockTransport(handler), pause_s=0)
    assert sorted(p.name for p in written) == ["rating_changes.json", "standings.json"]
    assert "showUnofficial=false" in calls[0] and len(calls) == 3
    assert fetch_snapshot([1971], tmp_path, transport=httpx.MockTransport(handler), pause_s=0) == []  # kept
    down = httpx.MockTransport(lambda r: httpx.Response(503, json={"status": "FAILED", "comment": "down"}))
    with pytest.raises(EvalError, match="after 2 attempts.*down"):
        fetch_snapshot([1972], tmp_path, transport=down, pause_s=0, retries=2)
