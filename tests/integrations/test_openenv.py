"""OpenEnv: the Elastic Reasoning episode served by OpenEnv's app factory, driven by OpenEnv's own client.

A real engine (the tiny model's ``transformers`` ``generate``) plays the policy through the server, and the
conformance kit (``er_integrations.conformance``) compares the episodes with er_env's HF backend.
"""

import os
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from er_env.budget import BudgetError
from er_env.data import load_problems
from er_integrations.conformance import Rollout, check_conformance, standard_budgets
from tests.conftest import _free_port, require, serve_process
from tests.integrations.hf_engine import hf_generate

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


def openenv_adapter(server, backend):
    """The conformance kit's adapter: one OpenEnv session per (problem index, budget), driven by a real engine.

    The engine is the tiny model's ``transformers`` ``generate`` (greedy): phase 1 from ``prompt_ids`` with
    ``max_tokens=t`` stopping at ``</think>`` or EOS, phase 2 from the episode's ``prompt_ids + completion_ids``
    with ``max_tokens=remaining_tokens`` stopping at EOS; each phase's ids are one action.
    """
    think_end, eos = list(backend.special.think_end), sorted(backend.special.eos)

    def openenv(index, budget):
        with GenericEnvClient(base_url=server).sync() as client:
            first = client.reset(problem_index=index, think_budget_tokens=budget.think,
                                 solution_budget_tokens=budget.solution).observation
            assert first["think_budget_tokens"] == budget.think and first["remaining_tokens"] == budget.think
            phase1, _, _ = hf_generate(backend, first["prompt_ids"], first["remaining_tokens"], think_end + eos)
            last = client.step({"token_ids": phase1}).observation
            if last["phase"] != "done":  # (EOS while thinking with eos_in_thinking="end" ends it at once)
                assert last["remaining_tokens"] == budget.solution
                prefix = first["prompt_ids"] + last["completion_ids"]
                phase2, _, _ = hf_generate(backend, prefix, last["remaining_tokens"], eos)
                last = client.step({"token_ids": phase2}).observation
            state = client.state()
        assert last["phase"] == "done" and state["phase"] == "done"
        return Rollout(prompt_ids=first["prompt_ids"], completion_ids=last["completion_ids"],
                       env_mask=last["env_mask"], thinking_tokens=state["thinking_tokens"],
                       solution_tokens=state["solution_tokens"], thinking_truncated=last["thinking_truncated"],
                       finish_reason=last["finish_reason"])

    return openenv


def test_a_real_engine_through_the_server_conforms_to_er_env_backend(server, backend):
    """The kit: 3 problems x (binding t=4, non-binding t=300), per-episode t/s via reset, greedy."""
    report = check_conformance(openenv_adapter(server, backend), backend, [0, 1, 2], standard_budgets())
    assert report.ok and len(report.cases) == 6


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
