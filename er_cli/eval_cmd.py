r"""``er eval``: budget sweeps, reports and the Codeforces rating.

Examples::

    er eval run --model Salesforce/E1-Math-1.5B --backend vllm --dataset aime2024 \
        --budgets 1024:1024,2048:1024,none --methods elastic,truncation --samples 16 --out runs/aime
    er eval report runs/aime
    er eval codeforces-rating --results runs/cf/codeforces/elastic_1024-1024.json \
        --problem-ids runs/cf/codeforces/problem_ids.json --contests cf_snapshot --pass-n 1
    er eval codeforces-snapshot --contests cf_snapshot

Exit status: 0 on success, 1 on an error (bad input, backend down; finished
chunks are saved and a re-run resumes).
"""

from __future__ import annotations

import argparse
import json
import sys

from er_cli import add_dataclass_args, dataclass_from_args

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``er eval`` and its actions."""
    from er_env.eval.config import EvalConfig

    ev = subparsers.add_parser("eval", help="Evaluate a model: budget sweeps, baselines, reports, Codeforces rating.",
                               description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ev.set_defaults(func=lambda ns: ev.print_help() or 2)
    actions = ev.add_subparsers(dest="eval_action", metavar="ACTION")

    run = actions.add_parser("run", help="Run or resume a budget sweep; write DIR/results.json, summary.md, plots.")
    add_dataclass_args(run, EvalConfig, required=("model", "dataset", "out"))
    run.add_argument("--quiet", action="store_true", help="No progress bars.")
    run.set_defaults(func=_run)

    rep = actions.add_parser("report", help="Re-render results.json, summary.md and plots from DIR/samples.jsonl.")
    rep.add_argument("dir", help="An `er eval run` output directory.")
    rep.add_argument("--pass-k", default=None, help="k values of pass@k, comma-separated (default: 1 and the "
                                                   "largest sample count).")
    rep.set_defaults(func=_report)

    cf = actions.add_parser("codeforces-rating", help="CodeElo rating from per-problem results (official method).")
    cf.add_argument("--results", required=True, help="JSON: per problem, a list of per-sample 0/1 results.")
    cf.add_argument("--problem-ids", default=None, help="JSON list of problem ids (default: the 408, shared data).")
    cf.add_argument("--contests", required=True, help="Snapshot dir: <contestId>/standings.json, rating_changes.json.")
    cf.add_argument("--ratings", default=None, help="Rating distribution {rating: users} (default: 2024, shared data).")
    cf.add_argument("--pass-n", default="1", help="Samples per problem to consider; 'all' for every sample.")
    cf.set_defaults(func=_rating)

    snap = actions.add_parser("codeforces-snapshot", help="Fetch contest.standings / contest.ratingChanges (online).")
    snap.add_argument("--contests", required=True, help="Directory to write <contestId>/*.json into.")
    snap.add_argument("--problem-ids", default=None, help="Problem-id list whose contests to fetch (default: the 408).")
    snap.set_defaults(func=_snapshot)


def _run(ns: argparse.Namespace) -> int:
    from er_env.eval.config import EvalConfig
    from er_env.eval.runner import run_eval

    quiet = ns.__dict__.pop("quiet", False)
    cfg = dataclass_from_args(EvalConfig, ns)
    results = run_eval(cfg, progress=not quiet)
    sys.stdout.write(results["markdown"])
    print(f"\nwrote {cfg.out}/results.json, summary.md, plots/", file=sys.stderr)
    return 0


def _report(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from er_env.eval.config import EvalError
    from er_env.eval.report import write_report
    from er_env.eval.store import SAMPLES_FILE, SampleStore

    if not (Path(ns.dir) / SAMPLES_FILE).is_file():
        raise EvalError(f"{ns.dir!r} has no {SAMPLES_FILE}; pass the --out directory of an `er eval run`.")
    store = SampleStore(ns.dir)
    rows = list(store.rows())
    config_path = Path(ns.dir) / "run.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    try:
        ks = sorted({1, int(config.get("samples") or 1)}) if ns.pass_k is None else sorted(
            {int(k) for k in ns.pass_k.split(",") if k.strip()})
    except ValueError:
        raise EvalError(f"--pass-k must be comma-separated integers, got {ns.pass_k!r}.") from None
    results = write_report(ns.dir, rows, ks, config=config)
    sys.stdout.write(results["markdown"])
    return 0


def _load(path: str, what: str):
    from pathlib import Path

    from er_env.eval.config import EvalError

    p = Path(path)
    if not p.is_file():
        raise EvalError(f"{what} file {path!r} does not exist.")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise EvalError(f"{what} file {path!r} is not JSON ({exc}).") from None


def _rating(ns: argparse.Namespace) -> int:
    from er_env.eval.codeforces import default_problem_ids, rate
    from er_env.eval.config import EvalError

    results = _load(ns.results, "Results")
    ids = _load(ns.problem_ids, "Problem-id") if ns.problem_ids else default_problem_ids()
    ratings = _load(ns.ratings, "Ratings") if ns.ratings else None
    if ns.pass_n.lower() == "all":
        pass_n = None
    else:
        try:
            pass_n = int(ns.pass_n)
        except ValueError:
            raise EvalError(f"--pass-n must be a positive integer or 'all', got {ns.pass_n!r}.") from None
    print(json.dumps(rate(results, ids, ns.contests, ratings, pass_n), indent=2))
    return 0


def _snapshot(ns: argparse.Namespace) -> int:
    from er_env.eval.codeforces import default_problem_ids, fetch_snapshot, group_by_contest

    ids = _load(ns.problem_ids, "Problem-id") if ns.problem_ids else default_problem_ids()
    contests = [cid for cid, _ in group_by_contest([[]] * len(ids), ids)]
    written = fetch_snapshot(contests, ns.contests)
    print(json.dumps({"contests": contests, "written": [str(p) for p in written]}, indent=2))
    return 0
