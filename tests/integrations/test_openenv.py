"""OpenEnv: the Elastic Reasoning episode served by OpenEnv's app factory, driven by OpenEnv's own client."""

import os
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from er_env.budget import Budget, BudgetError
from er_env.data import load_problems
from tests.conftest import _free_port, require, serve_process

try:  # collected in every venv; only .venv has OpenEnv (the fixture below skips, or fails in CI)
    from openenv.core.generic_client import GenericEnvClient

    from er_integrations.openenv import ElasticReasoningEnvironment, OpenEnvConfig
except ImportError:  # pragma: no cover - depends on the venv
    GenericEnvClient = None


@pytest.fixture(autouse=True)
def _needs_openenv():
    require(GenericEnvClient is not None, "openenv is not installed (make venv: pip install -e '.[openenv]')")

THINK, SOLUTION = 12, 24


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    """A real `python -m er_integrations.openenv` process (uvicorn, OpenEnv's create_app) on loopback."""
    port = _free_port()
    log = tmp_path_factory.mktemp("openenv") / "server.log"
    cmd = [sys.executable, "-m", "er_integrations.openenv", "--port", str(port), "--max-concurrent-envs", "4",
           "--think", str(THINK), "--solution", str(SOLUTION), "--tokenizer", str(tiny_model_dir)]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    with serve_process(cmd, f"http://127.0.0.1:{port}", log, env=env, what="OpenEnv server") as url:
        yield url


def _episode(url: str, index: int, think: str, solution: str) -> tuple[dict, dict, dict, dict]:
    with GenericEnvClient(base_url=url).sync() as client:
        first = client.reset(problem_index=index).observation
        mid = client.step({"text": think}).observation
        last = client.step({"text": solution})
        return first, mid, {"observation": last.observation, "reward": last.reward, "done": last.done}, client.state()


def test_whole_episodes_in_concurrent_sessions_through_openenvs_client(server, tiny_model_dir):
    import httpx

    schema = httpx.get(server + "/schema", timeout=10).json()
    assert "token_ids" in str(schema["action"]) and "thinking_truncated" in str(schema["observation"])
    problems = load_problems("embedded:math")
    eos = "<｜end▁of▁sentence｜>"
    jobs = [(i, " ".join(["step"] * 30), f"\\boxed{{{problems[i].answers[0]}}}{eos}") for i in range(3)]  # cut at t
    jobs += [(3, "short </think>", f"\\boxed{{-99}}{eos}")]  # closes </think> itself; wrong answer
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda j: _episode(server, *j), jobs))
    for (index, _, _), (first, mid, last, state) in zip(jobs, results, strict=True):
        assert first["phase"] == "thinking" and first["problem_id"] == problems[index].id
        assert first["think_budget_tokens"] == THINK and first["remaining_tokens"] == THINK
        assert problems[index].question in first["prompt_text"]
        obs = last["observation"]
        assert last["done"] is True and obs["phase"] == "done" and state["phase"] == "done"
        assert state["step_count"] == 2 and state["problem_id"] == problems[index].id
        if index < 3:
            assert mid["forced_think_end"] and mid["phase"] == "solution" and mid["remaining_tokens"] == SOLUTION
            assert obs["thinking_truncated"] and obs["env_mask"].count(0) == 1
            assert last["reward"] == 1.0 and obs["verdict"] == "correct"
        else:
            assert not mid["forced_think_end"] and not obs["thinking_truncated"] and 0 not in obs["env_mask"]
            assert last["reward"] == 0.0 and obs["verdict"] == "wrong"


@pytest.mark.parametrize("think", [4, 200], ids=["binding", "non-binding"])  # per-episode t via reset
def test_a_real_models_two_phases_through_the_server_equal_the_backends_protocol(server, backend, think):
    """Greedy tiny model: phase 1 (max t, stop at </think>), phase 2 from the episode's prefix, fed as actions."""
    from er_env.backends.base import SamplingConfig

    greedy = SamplingConfig(temperature=0.0)
    binds = []
    for index in range(3):  # a batch of prompts, one session each, sequentially
        with GenericEnvClient(base_url=server).sync() as client:
            first = client.reset(problem_index=index, think_budget_tokens=think).observation
            assert first["think_budget_tokens"] == think and first["remaining_tokens"] == think
            [ref] = backend.generate([first["prompt_ids"]], Budget(think=think, solution=SOLUTION), greedy)
            [phase1] = backend.generate([first["prompt_ids"]], Budget.unconstrained(max_tokens=think), greedy)
            mid = client.step({"token_ids": list(phase1.completion_ids)}).observation
            last = mid
            if mid["phase"] != "done":  # (EOS while thinking with eos_in_thinking="end" ends it at once)
                prefix = first["prompt_ids"] + mid["completion_ids"]
                left = Budget.unconstrained(max_tokens=mid["remaining_tokens"])
                [phase2] = backend.generate([prefix], left, greedy)
                last = client.step({"token_ids": list(phase2.completion_ids)}).observation
        assert last["phase"] == "done"
        assert last["completion_ids"] == list(ref.completion_ids)
        assert last["env_mask"] == list(ref.env_mask)
        assert last["thinking_truncated"] == ref.thinking_truncated
        assert last["finish_reason"] == ref.finish_reason
        binds.append(ref.think_finish_reason == "budget")
    assert binds == [think == 4] * 3  # t binds on every prompt in the first case, on none in the second


def test_bad_settings_and_actions_fail_before_any_session():
    with pytest.raises(BudgetError, match="context_length=100"):
        OpenEnvConfig(think_budget_tokens=64, solution_budget_tokens=64, context_length=100)
    env = ElasticReasoningEnvironment(OpenEnvConfig(think_budget_tokens=4, solution_budget_tokens=4))
    with pytest.raises(RuntimeError, match="reset"):
        env.step({"text": "x"})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="exactly one of text or token_ids"):
        env.step({"text": "x", "token_ids": [1]})
    with pytest.raises(ValueError, match=r"Unknown reset argument\(s\) \['t'\]"):
        env.reset(t=3)
