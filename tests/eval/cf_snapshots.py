"""Build Codeforces API snapshots (``contest.standings`` / ``contest.ratingChanges``) for tests.

The files have the shape of the real API responses (``{"status": "OK", "result": ...}``,
standings rows with ``party.members[].handle``, ``points``, ``penalty``,
``problemResults``; rating changes with ``handle``, ``oldRating``, ``newRating``), with
made-up handles and numbers, written deterministically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence


def write_contest(
    root: Path, contest_id: int, *, olds: Sequence[int], points: Sequence[float], penalties: Sequence[int],
    problems: Sequence[tuple[str, float | None]], missing_from_changes: Sequence[int] = (),
    extra_changes: int = 0, teams_without_members: int = 0,
) -> Path:
    """Write ``root/<contest_id>/standings.json`` and ``rating_changes.json``.

    Args:
        root: the snapshot directory.
        contest_id: the contest id.
        olds: old rating of participant ``i`` (standings order).
        points: points of participant ``i`` (standings must be sorted best first).
        penalties: penalty of participant ``i``.
        problems: ``(index, points or None)`` per problem.
        missing_from_changes: participants whose rating change is left out (unrated).
        extra_changes: rating changes of handles that are not in the standings.
        teams_without_members: standings rows with an empty member list, appended.

    Returns:
        The contest directory.
    """
    base = root / str(contest_id)
    base.mkdir(parents=True, exist_ok=True)
    probs = []
    for index, pts in problems:
        p = {"contestId": contest_id, "index": index, "name": f"Problem {index}", "type": "PROGRAMMING", "tags": []}
        if pts is not None:
            p["points"] = pts
        probs.append(p)
    rows = []
    for i, (pt, pen) in enumerate(zip(points, penalties, strict=True)):
        rows.append({
            "party": {"contestId": contest_id, "members": [{"handle": f"user{contest_id}_{i}"}],
                      "participantType": "CONTESTANT", "ghost": False, "startTimeSeconds": 1715000000},
            "rank": i + 1, "points": pt, "penalty": pen, "successfulHackCount": 0, "unsuccessfulHackCount": 0,
            "problemResults": [{"points": 0.0, "rejectedAttemptCount": 0, "type": "FINAL"} for _ in probs],
        })
    for j in range(teams_without_members):
        rows.append({"party": {"contestId": contest_id, "members": [], "participantType": "CONTESTANT",
                               "teamName": f"team{j}"}, "rank": len(rows) + 1, "points": 0.0, "penalty": 0,
                     "problemResults": []})
    standings = {"status": "OK", "result": {
        "contest": {"id": contest_id, "name": f"Round {contest_id}", "type": "CF", "phase": "FINISHED"},
        "problems": probs, "rows": rows}}
    skip = set(missing_from_changes)
    changes = [{"contestId": contest_id, "contestName": f"Round {contest_id}", "handle": f"user{contest_id}_{i}",
                "rank": i + 1, "ratingUpdateTimeSeconds": 1715010000, "oldRating": old, "newRating": old + 10}
               for i, old in enumerate(olds) if i not in skip]
    changes += [{"contestId": contest_id, "contestName": f"Round {contest_id}", "handle": f"ghost{contest_id}_{j}",
                 "rank": 0, "ratingUpdateTimeSeconds": 1715010000, "oldRating": 3000, "newRating": 3000}
                for j in range(extra_changes)]
    (base / "standings.json").write_text(json.dumps(standings), encoding="utf-8")
    (base / "rating_changes.json").write_text(json.dumps({"status": "OK", "result": changes}), encoding="utf-8")
    return base


def build_suite(root: Path) -> dict[str, object]:
    """A snapshot set covering the method's edge cases, plus matching results and problem ids.

    Contests:
        1001: 250 rated, ICPC-style (no points), all old ratings 1500 (closed-form rating).
        1002: 300 rated, problems with points (decay of 50 per failed sample), varied ratings.
        1003: 150 rated: skipped (200 or fewer).
        1004: 203 in the standings, 3 of them unrated and 5 extra rating changes: 200 kept, skipped.
        1005: 205 in the standings, 4 unrated: 201 kept, rated.
        1006: a standings row without members: skipped, as the official code's exception path does.

    Returns:
        ``{"results": [...], "problem_ids": [...]}`` in the official formats.
    """
    n = 250
    write_contest(root, 1001, olds=[1500] * n, points=[3 - (3 * i) // n for i in range(n)],
                  penalties=[(i * 7) % 50 for i in range(n)], problems=[("A", None), ("B", None), ("C", None)])
    n = 300
    olds = [800 + (i * 37) % 2400 for i in range(n)]
    write_contest(root, 1002, olds=olds, points=[3000 - 10 * i for i in range(n)], penalties=[0] * n,
                  problems=[("A", 500.0), ("B", 1000.0), ("C", 1500.0), ("D1", 1250.0), ("D2", 750.0)])
    write_contest(root, 1003, olds=[1400] * 150, points=[150 - i for i in range(150)], penalties=[0] * 150,
                  problems=[("A", None)])
    write_contest(root, 1004, olds=[1600] * 203, points=[203 - i for i in range(203)], penalties=[0] * 203,
                  problems=[("A", None)], missing_from_changes=[3, 50, 100], extra_changes=5)
    write_contest(root, 1005, olds=[1000 + 5 * i for i in range(205)], points=[2 - (2 * i) // 205 for i in range(205)],
                  penalties=[i % 30 for i in range(205)], problems=[("A", None), ("B", None)],
                  missing_from_changes=[0, 1, 2, 3])
    write_contest(root, 1006, olds=[1500] * 220, points=[220 - i for i in range(220)], penalties=[0] * 220,
                  problems=[("A", None)], teams_without_members=1)
    ids = ["1001A", "1001B", "1001C", "1002A", "1002B", "1002C", "1002D1", "1002D2", "1003A", "1004A",
           "1005A", "1005B", "1006A"]
    results = [
        [1, 1, 0], [0, 1, 1], [0, 0, 0],            # 1001: A first try, B on the 2nd sample (pass@1: A only)
        [1, 0, 0], [0, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 0],  # 1002
        [1, 1, 1], [1, 0, 0], [0, 1, 0], [1, 1, 0], [1, 1, 1],
    ]
    return {"results": results, "problem_ids": ids}
