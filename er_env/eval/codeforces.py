"""Codeforces rating of a model, by the CodeElo method as the official code computes it.

This re-implements ``scripts/deepcoder/benchmark/cf_elo_calc.py`` of
SalesforceAIResearch/Elastic-Reasoning (a port of QwenLM/CodeElo's
``calc_rating.py``) on local snapshots of the Codeforces API, so the numbers can be
reproduced offline and the same snapshot always gives the same rating.

Method, per contest (the problems of the results grouped by the contest id in
their problem id, e.g. ``1971A`` -> contest 1971):

1. Participants: the handles of the first member of each row of
   ``contest.standings`` (``showUnofficial=false``) that also appear in
   ``contest.ratingChanges``; rows and rating changes of other handles are dropped.
   A contest whose two lists then differ in length, or that keeps 200 or fewer
   participants, is skipped (as is one whose standings hold a row without members).
2. The model's score: for each contest problem (in the standings' problem order)
   with results, the first correct sample among the first ``pass_n`` (``ith`` its
   0-based position) scores ``max(0, points - 50 * ith)`` when the problem has
   ``points``, else 1 point and ``10 * ith`` penalty.
3. Its rank: the 0-based index of the first participant with fewer points, or as
   many points and more penalty (the number of participants if none).
4. Its rating: the largest integer ``R`` in ``[0, max old rating + 100)`` found by
   bisection such that ``1 + sum_i 1 / (1 + 10 ** ((R - oldRating_i) / 400))``
   (the Elo seed of ``R``) is at least the rank; its percentile is the share of the
   2024 rating distribution strictly below ``R`` (``bisect_left``), in %, rounded
   to 0.1.

The model's rating is the mean of the per-contest ratings (a float), its percentile
the percentile of that mean; ``contests`` counts the contests not skipped. With
``pass_n=None`` a contest uses as many samples as its first listed problem has.

Known weaknesses (of the method, kept for comparability): most of the 408
problems are judged on their sample tests only (often a single test), so wrong
programs can pass; penalty counts failed samples, not submission time; points
decay by attempts, not by time; the rank is 0-based, so a model tied with nobody
at the top gets rank 0 and the bisection's upper end; ratings are compared with
participants' *old* ratings, not a real rating update; and the percentile uses the
2024 distribution whatever the contest date.

Differences from the official script, by design: snapshots are read from disk (a
missing or malformed file is an error naming it instead of a silently skipped
contest), and a results file that does not match the problem ids is an error
naming the first mismatch. The default problem ids and rating distribution are the
official ``metadata_cf.json`` and ``ratings_2024.json``, read from the shared data
directory (``code/codeforces_problem_ids.json`` and ``code/codeforces_ratings_2024.json``
under ``$ER_SHARED_DATA``, else ``../shared/data``), beside the ``codeforces_test.json``
they are index-aligned with; ``er eval codeforces-rating --problem-ids/--ratings`` take
other files.
"""

from __future__ import annotations

import bisect
import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from er_env.data.loaders import shared_data_dir
from er_env.eval.config import EvalError

__all__ = ["ContestRating", "contest_rating", "group_by_contest", "load_results", "load_snapshot", "percentile",
           "rate", "default_problem_ids", "default_ratings", "sorted_ratings", "fetch_snapshot"]

API = "https://codeforces.com/api"
_ID_RE = re.compile(r"(\d+)([A-Z].*)")
MIN_PARTICIPANTS = 200  # contests with this many participants or fewer are skipped


def _shared_json(name: str, flag: str) -> Any:
    path = shared_data_dir() / "code" / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvalError(f"{str(path)!r} does not exist. Set ER_SHARED_DATA to the directory holding code/{name} "
                        f"(the shared benchmark data), or pass {flag} FILE.") from None
    except ValueError as exc:
        raise EvalError(f"{str(path)!r} is not JSON ({exc}).") from None


def default_problem_ids() -> list[str]:
    """The 408 CodeElo problem ids, index-aligned with ``codeforces_test.json`` (from the shared data).

    Raises:
        EvalError: the file is missing (naming the path and ``ER_SHARED_DATA``) or not JSON.
    """
    return list(_shared_json("codeforces_problem_ids.json", "--problem-ids"))


def default_ratings() -> dict[str, int]:
    """The 2024 Codeforces rating distribution ``{rating: users}`` (from the shared data).

    Raises:
        EvalError: the file is missing (naming the path and ``ER_SHARED_DATA``) or not JSON.
    """
    return dict(_shared_json("codeforces_ratings_2024.json", "--ratings"))


def sorted_ratings(distribution: Mapping[str, int]) -> list[float]:
    """Expand ``{rating: count}`` into a sorted list of ratings."""
    out: list[float] = []
    for rating, count in distribution.items():
        out.extend([float(rating)] * int(count))
    return sorted(out)


def percentile(rating: float, ratings: Sequence[float]) -> float:
    """Share of ``ratings`` strictly below ``rating``, in %, rounded to 0.1."""
    return round(bisect.bisect_left(ratings, float(rating)) / len(ratings) * 100, 1)


@dataclass(frozen=True)
class ContestRating:
    """One contest's outcome.

    Attributes:
        contest_id: the contest.
        rating: the bisected rating (``None`` when skipped).
        percentile: its percentile (``None`` when skipped).
        score: the model's points.
        penalty: the model's penalty.
        rank: the model's 0-based rank.
        participants: participants kept (step 1).
        skipped: why the contest was skipped (``None`` if rated).
    """

    contest_id: int
    rating: int | None = None
    percentile: float | None = None
    score: float = 0
    penalty: int = 0
    rank: int = 0
    participants: int = 0
    skipped: str | None = None


def group_by_contest(results: Sequence[Sequence[Any]], problem_ids: Sequence[str]) -> list[tuple[int, dict]]:
    """Group per-problem results by contest, in order of first appearance.

    Raises:
        EvalError: a problem id that is not ``<digits><Letter...>``.
    """
    grouped: dict[int, dict[str, Sequence[Any]]] = {}
    for pid, outcome in zip(problem_ids, results, strict=True):
        m = _ID_RE.match(pid)
        if not m:
            raise EvalError(f"Bad Codeforces problem id {pid!r}; expected a contest id then an index, e.g. '1971A'.")
        grouped.setdefault(int(m.group(1)), {})[m.group(0)] = outcome
    return list(grouped.items())


def _first_handle(row: Mapping[str, Any]) -> str | None:
    members = row.get("party", {}).get("members") or []
    return members[0].get("handle") if members else None


def contest_rating(contest_id: int, status: Mapping[str, Sequence[Any]], standings: Mapping[str, Any],
                   changes: Sequence[Mapping[str, Any]], ratings: Sequence[float],
                   pass_n: int | None = 1) -> ContestRating:
    """Rate the model on one contest (steps 1-4 of the module docstring).

    Args:
        contest_id: the contest id.
        status: ``{problem_id: [per-sample 0/1]}`` of this contest's problems.
        standings: ``result`` of ``contest.standings`` (``problems``, ``rows``).
        changes: ``result`` of ``contest.ratingChanges``.
        ratings: the sorted rating distribution.
        pass_n: samples per problem to consider (``None``: all of the first problem's).

    Returns:
        The :class:`ContestRating` (``skipped`` set for a skipped contest).
    """
    handles = [_first_handle(r) for r in standings["rows"]]
    if any(h is None for h in handles):
        return ContestRating(contest_id, skipped="a standings row has no members")
    common = set(handles) & {c["handle"] for c in changes}
    rows = [r for r, h in zip(standings["rows"], handles, strict=True) if h in common]
    kept = [c for c in changes if c["handle"] in common]
    if len(rows) != len(kept) or len(rows) <= MIN_PARTICIPANTS:
        why = (f"{len(rows)} standings rows vs {len(kept)} rating changes" if len(rows) != len(kept)
               else f"only {len(rows)} rated participants (needs more than {MIN_PARTICIPANTS})")
        return ContestRating(contest_id, participants=len(rows), skipped=why)
    score: float = 0
    penalty = 0
    for problem in standings["problems"]:
        pid = f"{problem['contestId']}{problem['index']}"
        if pid not in status:
            continue
        if pass_n is None:
            pass_n = len(status[pid])
        for ith, outcome in enumerate(list(status[pid])[:pass_n]):
            if outcome == 1.0:
                if "points" in problem:
                    score += max(0, problem["points"] - 50 * ith)
                else:
                    score += 1
                    penalty += ith * 10
                break
    n = len(rows)
    rank = next((i for i, r in enumerate(rows)
                 if r["points"] < score or (r["points"] == score and r["penalty"] > penalty)), n)
    old = [c["oldRating"] for c in kept]
    lo, hi = 0, max(old) + 100
    while hi - lo > 1:
        mid = (lo + hi) // 2
        seed = 1
        for o in old:
            seed += 1 / (1 + 10 ** ((mid - o) / 400))
        if seed < rank:
            hi = mid
        else:
            lo = mid
    return ContestRating(contest_id, lo, percentile(lo, ratings), score, penalty, rank, n)


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise EvalError(f"Missing {what} snapshot {str(path)!r}; fetch it with `er eval codeforces-snapshot` "
                        "(needs network) or copy the raw Codeforces API response there.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise EvalError(f"Malformed {what} snapshot {str(path)!r}: not JSON ({exc}).") from None


def load_snapshot(directory: str | Path, contest_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read ``DIR/<id>/standings.json`` and ``rating_changes.json`` (raw API responses).

    Returns:
        ``(standings["result"], rating_changes["result"])``.

    Raises:
        EvalError: a file is missing, not JSON, not an ``"OK"`` response or lacks
            the fields the method reads (the message names the file).
    """
    base = Path(directory) / str(contest_id)
    st_path, ch_path = base / "standings.json", base / "rating_changes.json"
    st, ch = _read_json(st_path, "standings"), _read_json(ch_path, "rating changes")
    for path, body in ((st_path, st), (ch_path, ch)):
        if not isinstance(body, dict) or body.get("status") != "OK" or "result" not in body:
            got = body.get("comment", body.get("status")) if isinstance(body, dict) else type(body).__name__
            raise EvalError(f"Malformed snapshot {str(path)!r}: expected a Codeforces API response with "
                            f"status 'OK' and a 'result', got {got!r}.")
    res = st["result"]
    try:
        for row in res["rows"]:
            row["points"], row["penalty"], row["party"]  # noqa: B018 - presence check
        for p in res["problems"]:
            p["contestId"], p["index"]  # noqa: B018
        for c in ch["result"]:
            c["handle"], c["oldRating"]  # noqa: B018
    except (KeyError, TypeError) as exc:
        raise EvalError(f"Malformed snapshot under {str(base)!r}: a row lacks the field {exc} "
                        "(need rows[].points/penalty/party, problems[].contestId/index, "
                        "rating changes [].handle/oldRating).") from None
    return res, list(ch["result"])


def load_results(results: Any, problem_ids: Sequence[str]) -> list[list[Any]]:
    """Check a results object against the problem ids and return it as a list aligned with them.

    Args:
        results: the official list (one per-sample 0/1 list per problem id), or a
            ``{problem_id: [...]}`` mapping.
        problem_ids: the problem ids.

    Raises:
        EvalError: lengths or ids do not match (the first mismatch is named), or an
            entry is not a list of 0/1 values.
    """
    if isinstance(results, Mapping):
        unknown = next((k for k in results if k not in set(problem_ids)), None)
        if unknown is not None:
            raise EvalError(f"The results name problem {unknown!r}, which is not in the problem ids.")
        missing = next((p for p in problem_ids if p not in results), None)
        if missing is not None:
            raise EvalError(f"The results have no entry for problem {missing!r} (first missing of the problem ids).")
        results = [results[p] for p in problem_ids]
    if not isinstance(results, list):
        raise EvalError(f"Results must be a list of per-problem lists, got {type(results).__name__}.")
    if len(results) != len(problem_ids):
        i = min(len(results), len(problem_ids))
        extra = f"problem id {problem_ids[i]!r} (index {i}) has no result" if i < len(problem_ids) else (
            f"result {i} has no problem id")
        raise EvalError(f"The results hold {len(results)} entries but there are {len(problem_ids)} problem ids: "
                        f"{extra}. Pass the problem ids the results were made for (--problem-ids).")
    for i, entry in enumerate(results):
        if not isinstance(entry, list) or any(not isinstance(v, (bool, int, float)) or v not in (0, 1) for v in entry):
            raise EvalError(f"Result {i} (problem {problem_ids[i]!r}) must be a list of 0/1 values, got {entry!r:.80}.")
    return results


def rate(results: Any, problem_ids: Sequence[str], contests_dir: str | Path,
         ratings: Mapping[str, int] | None = None, pass_n: int | None = 1) -> dict[str, Any]:
    """The model's Codeforces rating over every contest of the results.

    Args:
        results: see :func:`load_results`.
        problem_ids: the problem ids (e.g. :func:`default_problem_ids`).
        contests_dir: the snapshot directory.
        ratings: the rating distribution (default: :func:`default_ratings`, 2024).
        pass_n: samples per problem (``None``: all).

    Returns:
        ``{"rating", "percentile", "contests", "pass_n", "per_contest": [...], "skipped": [...]}``;
        ``rating``/``percentile`` are ``None`` when no contest could be rated.

    Raises:
        EvalError: see :func:`load_results` and :func:`load_snapshot`; ``pass_n`` < 1.
    """
    if pass_n is not None and pass_n < 1:
        raise EvalError(f"pass_n must be >= 1 (or None for all samples), got {pass_n!r}.")
    aligned = load_results(results, problem_ids)
    dist = sorted_ratings(ratings if ratings is not None else default_ratings())
    rated, skipped = [], []
    for cid, status in group_by_contest(aligned, problem_ids):
        standings, changes = load_snapshot(contests_dir, cid)
        result = contest_rating(cid, status, standings, changes, dist, pass_n)
        (skipped if result.skipped else rated).append(result)
    if not rated:
        return {"rating": None, "percentile": None, "contests": 0, "pass_n": pass_n, "per_contest": [],
                "skipped": [asdict(r) for r in skipped]}
    mean = sum(r.rating for r in rated) / len(rated)  # type: ignore[misc]
    return {"rating": mean, "percentile": percentile(mean, dist), "contests": len(rated), "pass_n": pass_n,
            "per_contest": [asdict(r) for r in rated], "skipped": [asdict(r) for r in skipped]}


def fetch_snapshot(contest_ids: Sequence[int], directory: str | Path, *, transport: Any = None,
                   pause_s: float = 2.0, retries: int = 4, timeout_s: float = 30.0) -> list[Path]:
    """Download ``contest.standings`` (``showUnofficial=false``) and ``contest.ratingChanges``.

    Files that already exist are kept (delete them to refresh). The API allows about
    one call per 2 s; ``pause_s`` waits between calls.

    Args:
        contest_ids: the contests.
        directory: where ``<id>/standings.json`` and ``<id>/rating_changes.json`` go.
        transport: an ``httpx`` transport (tests).
        pause_s: pause between calls.
        retries: attempts per call.
        timeout_s: per-request timeout.

    Returns:
        The files written.

    Raises:
        EvalError: a call still failed after ``retries`` attempts (files already
            written are kept).
    """
    import httpx

    written = []
    with httpx.Client(timeout=timeout_s, transport=transport) as client:
        for cid in contest_ids:
            for name, url in (("standings.json", f"{API}/contest.standings?contestId={cid}&showUnofficial=false"),
                              ("rating_changes.json", f"{API}/contest.ratingChanges?contestId={cid}")):
                path = Path(directory) / str(cid) / name
                if path.is_file():
                    continue
                body, last = None, ""
                for attempt in range(retries):
                    try:
                        resp = client.get(url)
                        body = resp.json()
                        if resp.status_code == 200 and body.get("status") == "OK":
                            break
                        last, body = f"HTTP {resp.status_code}: {body.get('comment', '')}", None
                    except (httpx.HTTPError, ValueError) as exc:
                        last, body = f"{type(exc).__name__}: {exc}", None
                    time.sleep(pause_s * (attempt + 1))
                if body is None:
                    raise EvalError(f"Could not fetch {url} after {retries} attempts ({last}).")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(body), encoding="utf-8")
                written.append(path)
                time.sleep(pause_s)
    return written
