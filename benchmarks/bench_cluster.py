"""Reward cluster on Ray Serve: throughput and latency at 1, 2 and 4 simulated nodes, a soak, recovery from faults.

All nodes are processes of THIS machine (:class:`sandbox.cluster.local.LocalRayCluster`, 127.0.0.1), so they
share its cores: more nodes add Ray's overhead, not CPU. The figures show that the cluster scales out
correctly and how much the engine costs, not what N real hosts would give.

In one run:

1. For each node count: closed-loop saturation (``--concurrency`` clients, ``--measure-s`` seconds) of
   single 5-test submissions through Ray's HTTP proxy: judged per second, p50 / p99 latency.
2. On the 2-node cluster: an open-loop soak at ``--overload`` x the measured saturation for ``--soak-s``
   seconds: requests sent / judged / shed with 503 / wrong / lost, latency, RSS of the proxy and a replica
   over time.
3. On the same cluster: each fault of :data:`sandbox.cluster.chaos.FAULTS` during a 40-submission batch:
   lost and wrong results, batch wall time, recovery time (fault -> first fresh request answered).

Usage::

    python benchmarks/bench_cluster.py                         # 1,2,4 nodes, 10-minute soak, all faults
    python benchmarks/bench_cluster.py --soak-s 60 --write     # and replace the RESULTS.md section
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sandbox.cluster.chaos import FAULTS, PROXY, REPLICA, batch_under_fault  # noqa: E402
from sandbox.cluster.load import measure_saturation, soak  # noqa: E402
from sandbox.cluster.local import LocalRayCluster  # noqa: E402

SECTION = "## Reward cluster (Ray Serve)"


def service(judge_workers: int) -> dict[str, Any]:
    """Each replica's settings: a small admission queue, so overload is shed with 503 + Retry-After."""
    return {"judge_workers": judge_workers, "math_workers": 1, "isolation": "process",
            "max_pending": 4 * judge_workers}


def gateway_pids(cluster: LocalRayCluster) -> dict[str, int]:
    """The proxy's and one replica's pid (RSS sampling)."""
    found = {"proxy_rss_mb": cluster.processes(PROXY)[:1], "replica_rss_mb": cluster.processes(REPLICA)[:1]}
    return {name: pids[0] for name, pids in found.items() if pids}


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"scaling": [], "soak": None, "faults": []}
    for nodes in args.nodes:
        with LocalRayCluster(judge_nodes=nodes, dashboard=False, startup_timeout_s=300) as cluster:
            started = time.monotonic()
            cluster.deploy(service=service(args.judge_workers), max_queued_requests=16)
            deploy_s = time.monotonic() - started
            sat = measure_saturation(cluster.url, concurrency=args.concurrency, duration_s=args.measure_s)
            sat.update(nodes=nodes, deploy_s=round(deploy_s, 1))
            print(json.dumps(sat), flush=True)
            out["scaling"].append(sat)
            if nodes != args.soak_nodes:
                continue
            if args.soak_s > 0:
                report = soak(cluster.url, rate_per_s=args.overload * sat["throughput_per_s"],
                              duration_s=args.soak_s, rss_pids=lambda: gateway_pids(cluster), samples=11)
                out["soak"] = {"nodes": nodes, "overload": args.overload, "saturation_per_s": sat["throughput_per_s"],
                               **report.to_dict()}
                print(json.dumps(out["soak"]), flush=True)
            for fault in args.faults:
                time.sleep(5)  # let a restarted replica finish coming back
                rep = batch_under_fault(cluster, fault, n=40, at_s=0.8)
                print(json.dumps(rep.to_dict()), flush=True)
                out["faults"].append(rep.to_dict())
    return out


def _fmt(x: Any, digits: int = 3) -> str:
    return "-" if x is None else (f"{x:.{digits}f}" if isinstance(x, float) else str(x))


def markdown(res: dict[str, Any], command: str) -> str:
    lines = [SECTION, "", f"Command: `{command}`", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores shared by every simulated node (and other "
             "jobs): each node is a separate `ray start` process group on 127.0.0.1. More nodes add Ray's "
             "overhead on the same 2 cores, not capacity; on real hosts throughput adds up per node.", "",
             "Workload: single submissions, 5 stdio tests each, Python, process isolation, 2 judge workers per "
             "replica, one replica per node, Ray's proxy on the head.", "",
             "| nodes | judged/s | p50 s | p99 s | deploy s |", "|---|---|---|---|---|"]
    base = res["scaling"][0]["throughput_per_s"] if res["scaling"] else None
    for row in res["scaling"]:
        ratio = f" ({row['throughput_per_s'] / base:.2f}x)" if base else ""
        lines.append(f"| {row['nodes']} | {row['throughput_per_s']}{ratio} | {_fmt(row['p50_s'])} | "
                     f"{_fmt(row['p99_s'])} | {row['deploy_s']} |")
    soak_row = res.get("soak")
    if soak_row:
        rss = soak_row["rss_mb"]
        lines += ["", f"Soak: {soak_row['duration_s']:.0f} s at {soak_row['overload']}x saturation "
                  f"({soak_row['rate_per_s']:.1f} req/s offered, saturation {soak_row['saturation_per_s']}/s, "
                  f"{soak_row['nodes']} nodes).", "",
                  "| offered | not sent (client bound of 256 in flight reached) | sent | answered | judged OK | "
                  "shed 503 (with Retry-After) | wrong | lost | judged/s | p50 s | p99 s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|",
                  f"| {soak_row['offered']} | {soak_row['not_sent']} | {soak_row['sent']} | {soak_row['answered']} | "
                  f"{soak_row['ok']} | {soak_row['shed_503']} "
                  f"({soak_row['shed_with_retry_after']}) | {soak_row['wrong']} | {soak_row['lost']} | "
                  f"{soak_row['judged_per_s']} | {_fmt(soak_row['p50_s'])} | {_fmt(soak_row['p99_s'])} |", "",
                  "RSS over time (MiB): " + "; ".join(
                      f"t={r['t_s']}s proxy {_fmt(r.get('proxy_rss_mb'), 0)} replica {_fmt(r.get('replica_rss_mb'), 0)}"
                      for r in rss)]
    if res["faults"]:
        lines += ["", "Faults during a 40-submission batch (client: batches of 2, 6 in flight, 8 retries):", "",
                  "| fault | what was done | answered | correct | lost | wrong | batch s | recovery s |",
                  "|---|---|---|---|---|---|---|---|"]
        for f in res["faults"]:
            lines.append(f"| {f['fault']} | {f['action']} | {f['answered']}/{f['submissions']} | {f['correct']} | "
                         f"{f['lost']} | {f['wrong']} | {f['batch_wall_s']} | {_fmt(f['recovery_s'], 2)} |")
        lines += ["", "Recovery time: from the fault until a fresh one-test request (no retries) is answered "
                  "correctly. Not run here: a worker container OOM-killed (docker isolation inside the replicas)."]
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    path = REPO / "benchmarks" / "RESULTS.md"
    current = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    updated = pattern.sub(text + "\n", current) if pattern.search(current) else current.rstrip() + "\n\n" + text
    path.write_text(updated)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4])
    parser.add_argument("--judge-workers", type=int, default=2, help="Judge workers per replica.")
    parser.add_argument("--concurrency", type=int, default=16, help="Closed-loop clients.")
    parser.add_argument("--measure-s", type=float, default=15.0, help="Closed-loop measuring time.")
    parser.add_argument("--soak-nodes", type=int, default=2, help="Cluster size of the soak and the faults.")
    parser.add_argument("--soak-s", type=float, default=600.0, help="Soak duration (0: no soak).")
    parser.add_argument("--overload", type=float, default=4.0, help="Soak rate as a multiple of saturation.")
    parser.add_argument("--faults", type=lambda s: [f for f in s.split(",") if f], default=list(FAULTS),
                        help=f"Comma-separated subset of {list(FAULTS)} ('' for none).")
    parser.add_argument("--write", action="store_true", help="Replace the section of benchmarks/RESULTS.md.")
    args = parser.parse_args()
    unknown = set(args.faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults {sorted(unknown)}; use some of {list(FAULTS)}")
    if args.soak_nodes not in args.nodes:
        parser.error(f"--soak-nodes {args.soak_nodes} must be one of --nodes {args.nodes}")
    res = run(args)
    text = markdown(res, "python benchmarks/bench_cluster.py " + " ".join(sys.argv[1:]))
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
