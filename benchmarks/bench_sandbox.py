r"""Sandbox throughput: our Docker-isolated judge vs. LiveCodeBench's grader vs. one `docker run` per submission.

Measures, side by side in one run:

1. Judged LeetCode reference solutions per second (assert-style ``check(candidate)`` tests from
   ``../shared/data/code/leetcode_train.json``), each method with the same concurrency (``--concurrency``):

   - ``docker pool``: :class:`sandbox.core.judge.Judge` over :class:`sandbox.isolation.docker.DockerBackend`
     (warm locked-down containers, zygote fork per test);
   - ``process pool``: the same judge over the ``process`` backend (no Docker), for reference;
   - ``LCB-style``: LiveCodeBench's grader approach, reimplemented minimally: per submission a
     ``multiprocessing.Manager`` list and a ``multiprocessing.Process`` that ``exec``\\ s the prelude, the
     solution and the tests in-process under ``signal.alarm``; parent ``join`` with a timeout, then kill.
     No isolation beyond a forked process (same uid, network, filesystem);
   - ``docker run``: one fresh locked-down ``docker run --rm -i`` of the worker image per submission.

2. Trivial program executions per second (``print(input())``): bare ``fork()``, ``fork+exec`` of a fresh
   Python, and our runner through the Docker pool and the process backend, as one job of many tests
   (the pre-forked fast path: one forked child per test, and with ``share_process`` all tests in one
   forked child) and as one-test jobs (a full round trip each).

Usage::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_sandbox.py                 # print the tables
    PYTHONPATH=. .venv/bin/python benchmarks/bench_sandbox.py --write         # also update RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import resource
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sandbox.core.jobs import RunJob, RunOutcome  # noqa: E402
from sandbox.core.judge import Judge, JudgeConfig, Submission  # noqa: E402
from sandbox.core.verdicts import Verdict  # noqa: E402
from sandbox.isolation.docker import NO_IPC_SYSCTLS, RUNNER_CAPS  # noqa: E402
from sandbox.runner.harness import LEETCODE_PRELUDE  # noqa: E402

DATA = Path(os.environ.get("ER_SHARED_DATA", REPO.parent / "shared" / "data")) / "code" / "leetcode_train.json"
SECTION = "## Sandbox throughput"


def _execute(backend, wire_job: dict) -> dict:
    """Run a RunJob given in its JSON form; the outcome in its JSON form."""
    return backend.execute(RunJob.from_wire(wire_job)).to_wire()


def load_problems(n: int) -> list[dict]:
    """Load the first ``n`` LeetCode rows as ``{"code", "test_code"}``."""
    rows = json.loads(DATA.read_text())
    return [{"code": r["solutions"], "test_code": r["tests"]["functional"]} for r in rows[:n]]


# ----------------------------------------------------------------- LCB-style grader (minimal reimplementation)

def _lcb_child(code: str, test_code: str, timeout_s: int, result) -> None:
    def _alarm(*_):
        raise TimeoutError("timed out")

    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout_s)
    sys.stdout = open(os.devnull, "w")
    try:
        ns: dict = {"__name__": "__main__"}
        exec(compile(LEETCODE_PRELUDE + "\n" + code + "\n" + test_code, "<sol>", "exec"), ns)
        result.append(True)
    except BaseException:  # noqa: BLE001 - any failure is a failed test, as in LCB
        result.append(False)
    finally:
        signal.alarm(0)


def lcb_check(problem: dict, timeout_s: int = 6) -> bool:
    """LCB's ``check_correctness`` shape: Manager list + one Process per submission + join/kill."""
    manager = multiprocessing.Manager()
    try:
        result = manager.list()
        proc = multiprocessing.Process(target=_lcb_child,
                                       args=(problem["code"], problem["test_code"], timeout_s, result))
        proc.start()
        proc.join(timeout=timeout_s + 1)
        if proc.is_alive():
            proc.kill()
            proc.join()
        return bool(result) and bool(result[0])
    finally:
        manager.shutdown()


# ----------------------------------------------------------------- docker run per submission

def docker_run_check(problem: dict, image: str, judge: Judge) -> bool:
    """One fresh locked-down container per submission, same runner, same lock-down as the pool."""
    job = judge.build_job(problem["code"], _assert_spec(problem))
    caps = [a for c in RUNNER_CAPS for a in ("--cap-add", c)]
    sysctls = [a for k, v in NO_IPC_SYSCTLS.items() for a in ("--sysctl", f"{k}={v}")]
    argv = ["docker", "run", "--rm", "-i", "--network", "none", "--ipc", "none", *sysctls, "--read-only",
            "--tmpfs", "/tmp:rw,noexec,nosuid,nodev,size=512m,mode=0711", "--cap-drop", "ALL", *caps,
            "--security-opt", "no-new-privileges", "--pids-limit", "256", "--memory", "3g", "--init", image]
    wire = {**job.to_wire(), "sandbox_uid": 1_234_567, "sandbox_gid": 1_234_567, "sweep_uid": True}
    proc = subprocess.run(argv, input=json.dumps(wire) + "\n", capture_output=True, text=True, timeout=120)
    outcome = RunOutcome.from_wire(json.loads(proc.stdout.splitlines()[-1]))
    return judge.result_from_outcome(outcome, _spec_obj(problem)).verdict is Verdict.AC


def _assert_spec(problem: dict):
    return _spec_obj(problem)


def _spec_obj(problem: dict):
    from sandbox.core.spec import TestSpec

    return TestSpec.from_dict({"kind": "assert", "test_code": problem["test_code"]})


# ----------------------------------------------------------------- measurements

def timed(fn, items, concurrency: int) -> tuple[float, list]:
    """(seconds, results) of ``fn`` over ``items`` with a thread pool of ``concurrency``."""
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(fn, items))
    return time.perf_counter() - start, results


_DOCKER_DAEMONS = ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "docker-init")


def _container_cpu_s(container_id: str) -> float:
    """CPU seconds of one container from its cgroup (v1 cpuacct or v2 cpu.stat); 0.0 if unreadable."""
    try:
        with open(f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage") as f:
            return int(f.read()) / 1e9
    except OSError:
        pass
    try:
        with open(f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat") as f:
            return int(f.readline().split()[1]) / 1e6
    except (OSError, IndexError, ValueError):
        return 0.0


def cpu_snapshot(docker_backend) -> float:
    """CPU seconds so far of all a method can use: this process tree (live and reaped), the pool's containers
    (their cgroups) and the Docker daemons. Differences of two snapshots are far less load-dependent than wall time."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                text = f.read()
        except OSError:
            continue
        comm, fields = text[text.index("(") + 1:text.rindex(")")], text.rsplit(")", 1)[1].split()
        stats[int(pid)] = (int(fields[1]), comm, sum(int(x) for x in fields[11:15]) / tick)
    tree, frontier, total = {os.getpid()}, [os.getpid()], 0.0
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _, _) in stats.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    total += sum(stats[pid][2] for pid in tree - {os.getpid()})
    total += sum(cpu for _, comm, cpu in stats.values() if comm in _DOCKER_DAEMONS)
    for usage in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)):
        total += usage.ru_utime + usage.ru_stime
    return total + sum(_container_cpu_s(cid) for cid in docker_backend.container_ids())


def bench_leetcode(args, docker_backend, process_backend, image: str) -> list[tuple]:
    """Rows ``(method, submissions, seconds, AC count, CPU seconds or None)`` for the LeetCode solutions."""
    problems = load_problems(args.problems)
    cfg = JudgeConfig(max_concurrency=args.concurrency)
    rows = []
    for name, backend in (("docker pool (ours)", docker_backend), ("process pool (ours, no Docker)", process_backend)):
        judge = Judge(cfg, backend)
        subs = [Submission(code=p["code"], spec={"kind": "assert", "test_code": p["test_code"]}) for p in problems]
        judge.judge_batch(subs[:4])  # warm
        cpu0, start = cpu_snapshot(docker_backend), time.perf_counter()
        results = judge.judge_batch(subs)
        seconds, cpu = time.perf_counter() - start, cpu_snapshot(docker_backend) - cpu0
        rows.append((name, len(subs), seconds, sum(r.verdict is Verdict.AC for r in results), cpu))
    cpu0 = cpu_snapshot(docker_backend)
    seconds, ok = timed(lcb_check, problems, args.concurrency)
    rows.append(("LCB-style (Manager + Process + exec)", len(problems), seconds, sum(ok),
                 cpu_snapshot(docker_backend) - cpu0))
    few = problems[: args.docker_run_problems]
    judge = Judge(cfg, docker_backend)
    seconds, ok = timed(lambda p: docker_run_check(p, image, judge), few, args.concurrency)
    rows.append(("docker run per submission", len(few), seconds, sum(ok), None))  # its containers come and go
    return rows


def bench_trivial(args, docker_backend, process_backend) -> list[tuple]:
    """Rows ``(path, runs, seconds)`` for the trivial program."""
    n = args.trivial
    rows = []
    start = time.perf_counter()
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    rows.append(("bare fork() + exit + wait (this process)", n, time.perf_counter() - start))
    small = ("import os, time\nt = time.perf_counter()\nfor _ in range(%d):\n    pid = os.fork()\n"
             "    if pid == 0:\n        os._exit(0)\n    os.waitpid(pid, 0)\nprint(time.perf_counter() - t)" % n)
    secs = float(subprocess.run([sys.executable, "-S", "-c", small], capture_output=True, text=True, check=True).stdout)
    rows.append(("bare fork() + exit + wait (minimal python -S)", n, secs))
    start = time.perf_counter()
    for _ in range(n // 5):
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    rows.append(("fork+exec fresh python -c pass", n // 5, time.perf_counter() - start))
    job = {"source": "print(input())", "tests": [{"stdin": str(i)} for i in range(n)],
           "stop_on_first_failure": False}
    for name, backend in (("docker pool", docker_backend), ("process pool", process_backend)):
        _execute(backend, {**job, "tests": job["tests"][:10]})
        start = time.perf_counter()
        out = _execute(backend, job)
        assert all(t["status"] == "OK" for t in out["tests"]), "trivial job failed"
        rows.append((f"{name}: 1 job x {n} tests (fork fast path)", n, time.perf_counter() - start))
        shared = {**job, "share_process": True}
        _execute(backend, {**shared, "tests": job["tests"][:10]})
        start = time.perf_counter()
        out = _execute(backend, shared)
        assert all(t["status"] == "OK" and t["stdout"] == f"{i}\n" for i, t in enumerate(out["tests"])), "shared job"
        rows.append((f"{name}: 1 job x {n} tests, share_process", n, time.perf_counter() - start))
        one = {"source": "print(input())", "tests": [{"stdin": "1"}]}
        start = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(lambda j: _execute(backend, j), [one] * (n // 5)))
        rows.append((f"{name}: {n // 5} one-test jobs, {args.concurrency} concurrent", n // 5,
                     time.perf_counter() - start))
    return rows


def render(args, lc_rows, trivial_rows, load_before, load_after) -> str:
    """Format the ``## Sandbox throughput`` section."""
    lcb = next(r for r in lc_rows if r[0].startswith("LCB"))
    lcb_rate = lcb[1] / lcb[2]
    lines = [SECTION, "",
             "Command: `PYTHONPATH=. .venv/bin/python benchmarks/bench_sandbox.py "
             f"--problems {args.problems} --trivial {args.trivial} --concurrency {args.concurrency} --write`",
             f"Machine: 2-core CPU shared with other agents (load average {load_before} before, {load_after} "
             f"after), Docker {_docker_version()}, worker image on the debootstrapped Debian base (Python 3.11.2).",
             "",
             f"### Judged LeetCode reference solutions (assert-style, first {args.problems} of leetcode_train.json)",
             "",
             "| method | isolation | submissions | seconds | submissions/s | AC | vs LCB-style | CPU ms/sub "
             "| vs LCB-style (CPU) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    iso = {"docker pool (ours)": "container: no network, read-only, caps dropped, own uid",
           "process pool (ours, no Docker)": "namespaces + uid drop + rlimits",
           "LCB-style (Manager + Process + exec)": "forked process only",
           "docker run per submission": "container (same lock-down)"}
    lcb_cpu_ms = 1000 * lcb[4] / lcb[1]
    for name, n, secs, ac, cpu in lc_rows:
        cpu_ms = None if cpu is None else 1000 * cpu / n
        cpu_cols = "n/a | n/a" if cpu_ms is None else f"{cpu_ms:.1f} | {lcb_cpu_ms / cpu_ms:.2f}x"
        lines.append(f"| {name} | {iso[name]} | {n} | {secs:.2f} | {n / secs:.1f} | {ac}/{n} | "
                     f"{(n / secs) / lcb_rate:.2f}x | {cpu_cols} |")
    bare = next(r[1] / r[2] for r in trivial_rows if "minimal" in r[0])
    lines += ["", "### Trivial program `print(input())`", "",
              "| path | runs | seconds | runs/s | ms/run | vs bare fork (minimal python) |",
              "|---|---:|---:|---:|---:|---:|"]
    for name, n, secs in trivial_rows:
        lines.append(f"| {name} | {n} | {secs:.2f} | {n / secs:.0f} | {1000 * secs / n:.2f} | "
                     f"{(n / secs) / bare:.2f}x |")
    lines += ["", *_reading(lc_rows, trivial_rows, lcb_rate, bare)]
    return "\n".join(lines) + "\n"


def _reading(lc_rows, trivial_rows, lcb_rate: float, bare: float) -> list[str]:
    ours = next(r for r in lc_rows if r[0].startswith("docker pool"))
    lcb = next(r for r in lc_rows if r[0].startswith("LCB"))
    ratio = (ours[1] / ours[2]) / lcb_rate
    cpu_ratio = (lcb[4] / lcb[1]) / (ours[4] / ours[1])
    rate = {r[0]: r[1] / r[2] for r in trivial_rows}
    fork_rate = next(v for k, v in rate.items() if k.startswith("docker pool: 1 job") and "fork fast" in k)
    shared_rate = next(v for k, v in rate.items() if k.startswith("docker pool: 1 job") and "share_process" in k)
    zygote_fork = next(v for k, v in rate.items() if k.startswith("bare fork() + exit + wait (this"))
    verdict = "met" if ratio >= 3 else f"missed (needs {3 / ratio:.1f}x more)"
    shared_verdict = "met" if shared_rate >= 1000 else f"missed ({1000 / shared_rate:.1f}x short)"
    return [
        f"Reading: the Docker-isolated judge does {ratio:.2f}x the LCB-style grader's throughput with full "
        f"container isolation (target >= 3x: {verdict}) and needs {cpu_ratio:.2f}x less CPU per submission "
        f"(CPU summed over this process tree, the pool's container cgroups and the Docker daemons: the "
        f"load-robust figure, since wall-clock rates on this shared machine move by +-30% between runs); "
        f"one `docker run` per submission is "
        f"{(lc_rows[-1][1] / lc_rows[-1][2]) / (ours[1] / ours[2]):.3f}x of the warm pool, which is why the pool "
        f"exists. Per LeetCode submission the container's runner, zygote and test child use ~7-8 ms CPU in all "
        f"(Docker's attach transport ~0.4 ms), mostly the fork of the preloaded zygote and the child's "
        f"copy-on-write faults. Trivial program, one job through the Docker pool: {shared_rate:.0f} runs/s with "
        f"`share_process` (the job's tests in one forked child; target >= 1000: {shared_verdict}), "
        f"{fork_rate:.0f} runs/s with a fresh forked child per test. The fork-per-test path cannot reach 1000/s "
        f"here: a pool container is capped at 1 CPU, and a bare fork()+_exit()+wait of a process as large as "
        f"the zygote costs ~1.3-1.8 ms CPU on this machine (the table's fork of this benchmark process: "
        f"{1000 / zygote_fork:.2f} ms; of a minimal `python -S`: {1000 / bare:.2f} ms) before any test work. "
        f"Numbers come from a 2-core machine shared with other agents (see the load average): ratios within "
        f"one run are the comparable result.",
    ]


def _docker_version() -> str:
    proc = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True)
    return proc.stdout.strip() or "?"


def write_section(text: str, path: Path) -> None:
    """Replace (or append) the ``## Sandbox throughput`` section of ``path``."""
    old = path.read_text() if path.exists() else ""
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda _: text + "\n", old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    path.write_text(new)


def main() -> None:
    """Run the benchmark (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=200, help="LeetCode submissions per method")
    parser.add_argument("--docker-run-problems", type=int, default=30, help="submissions for `docker run` (slow)")
    parser.add_argument("--trivial", type=int, default=1000, help="trivial runs in the one-job fast path")
    parser.add_argument("--concurrency", type=int, default=2, help="submissions in flight (= pool size)")
    parser.add_argument("--write", action="store_true", help=f"replace '{SECTION}' in benchmarks/RESULTS.md")
    args = parser.parse_args()

    from sandbox.isolation import get_backend
    from sandbox.isolation.docker_image import ensure_worker_image

    image = ensure_worker_image()
    load_before = os.getloadavg()[0]
    docker_backend = get_backend("docker", image=image, pool_size=args.concurrency, auto_build=False)
    process_backend = get_backend("process", workers=args.concurrency, base_uid=63100)
    try:
        lc_rows = bench_leetcode(args, docker_backend, process_backend, image)
        trivial_rows = bench_trivial(args, docker_backend, process_backend)
    finally:
        docker_backend.close()
        process_backend.close()
    text = render(args, lc_rows, trivial_rows, f"{load_before:.1f}", f"{os.getloadavg()[0]:.1f}")
    print(text)
    if args.write:
        write_section(text, REPO / "benchmarks" / "RESULTS.md")


if __name__ == "__main__":
    main()
