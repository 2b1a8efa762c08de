"""verifiers 0.4.0 (v1): the taskset scored by Task.score, and the two-phase harness in verifiers' own eval runner.

Runs in .venv-verifiers (marker `verifiers`): verifiers pins mcp==2.0.0, OpenEnv in .venv needs mcp<2. This
venv has no torch, so the model server (`er serve`, a real transformers model behind /v1/completions) and the
conformance kit's reference (er_env's HF backend) run with .venv's Python (`ER_SERVE_PYTHON`, default
`.venv/bin/python` in the repo).
"""

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from er_env.budget import Budget, BudgetError, TokenizerError
from er_env.data import load_problems
from er_integrations.conformance import check_conformance, standard_budgets
from tests.conftest import REPO, _free_port, require, serve_process
from tests.integrations.hf_reference import CachedReference

pytestmark = pytest.mark.verifiers

try:  # collected in every venv; only .venv-verifiers has verifiers (the fixture skips, or fails in CI)
    from verifiers.v1 import AgentConfig, EvalClientConfig, SamplingConfig, Trace
    from verifiers.v1.cli.eval.runner import run_eval
    from verifiers.v1.configs.cli.eval import EvalConfig
    from verifiers.v1.errors import TaskError
    from verifiers.v1.trace import AgentInfo, TraceTask

    from er_integrations.verifiers import (
        PLUGIN_ID,
        ElasticHarness,
        ElasticTaskset,
        ElasticTasksetConfig,
        env_config,
        load_environment,
        prime_rl_sampling,
        trace_rollout,
    )
except ImportError:  # pragma: no cover - depends on the venv
    Trace = None


@pytest.fixture(autouse=True)
def _needs_verifiers():
    require(Trace is not None, "verifiers is not installed (make venv-verifiers; run in .venv-verifiers)")


def _scored(task, reply: str):
    trace = Trace(task=TraceTask(type=type(task).__name__, data=task.data), agent=AgentInfo(config=AgentConfig()),
                  root_reply=reply)
    asyncio.run(task.score(trace))
    return trace


def test_the_taskset_iterates_as_verifiers_does_and_its_reward_grades_with_the_projects_checker():
    taskset = ElasticTaskset(ElasticTasksetConfig(limit=3))
    tasks = list(taskset)
    problems = load_problems("embedded:math")[:3]
    assert [t.data.id for t in tasks] == [p.id for p in problems] and [t.data.idx for t in tasks] == [0, 1, 2]
    assert problems[0].question in tasks[0].data.prompt_text
    right = _scored(tasks[0], f"adding pairs </think> so \\boxed{{{problems[0].answers[0]}}}")
    assert right.rewards["correct"].score == 1.0 and right.info["er_verdict"] == "correct"
    wrong = _scored(tasks[1], "</think> \\boxed{-31337}")
    assert wrong.rewards["correct"].score == 0.0 and wrong.info["er_verdict"] == "wrong"
    assert [t.data.id for t in taskset.take(1)] == [problems[0].id]


def test_a_grader_failure_is_an_error_not_a_zero():
    config = ElasticTasksetConfig(limit=1)
    config.task.reward_endpoint = "http://127.0.0.1:9"  # nothing listens on the discard port
    [task] = list(ElasticTaskset(config))
    with pytest.raises(TaskError, match="grader failed"):
        _scored(task, "</think> \\boxed{5050}")


def test_prime_rl_sampling_is_the_single_call_native_budget():
    sampling = prime_rl_sampling(Budget(think=64, solution=32), "tiny")
    assert sampling == {"max_completion_tokens": 64 + 1 + 32, "extra_body": {"thinking_token_budget": 64}}
    with pytest.raises(ValueError, match="Budget\\(think=t, solution=s\\)"):
        prime_rl_sampling(Budget.unconstrained(max_tokens=10), "tiny")


# ----------------------------------------------------------------------------- the two-phase harness
SERVE_PYTHON = Path(os.environ.get("ER_SERVE_PYTHON", REPO / ".venv" / "bin" / "python"))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The tiny model (built by .venv's Python) served by a real `er serve` process; yields (url, model dir)."""
    require(SERVE_PYTHON.exists(), f"{SERVE_PYTHON} not found: the model server needs .venv (make venv) or "
                                   "ER_SERVE_PYTHON=<a python with this project's [hf] extra>")
    model_dir = tmp_path_factory.mktemp("tiny-r1")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([str(SERVE_PYTHON), "-m", "er_cli", "tiny-model", "--out", str(model_dir)], check=True,
                   capture_output=True, env=env, timeout=300)
    port = _free_port()
    cmd = [str(SERVE_PYTHON), "-m", "er_cli", "serve", "--model", str(model_dir), "--served-model-name", "tiny-r1",
           "--port", str(port)]
    log = tmp_path_factory.mktemp("er-serve") / "server.log"
    with serve_process(cmd, f"http://127.0.0.1:{port}", log, env=env, what="er serve") as url:
        yield url, model_dir


async def _eval(url, model_dir, budget, tmp_path, limit=3):
    """verifiers' own eval runner (what vf-eval runs) on our plugin, greedy, against the server."""
    env = env_config("embedded:math", think_budget_tokens=budget.think, solution_budget_tokens=budget.solution,
                     tokenizer=str(model_dir), limit=limit, train_forced_token=budget.train_forced_token)
    config = EvalConfig(env=env, model="tiny-r1", client=EvalClientConfig(base_url=url + "/v1", api_key_var="ER_NONE"),
                        sampling=SamplingConfig(temperature=0.0), push=False, rich=None, output_dir=tmp_path,
                        max_concurrent=limit)
    return config, await run_eval(config)


def test_vf_eval_runner_with_the_two_phase_harness_conforms_to_er_env_backend(served, tmp_path):
    """The kit: 3 problems x (binding t=4, non-binding t=300), verifiers' run_eval vs er_env's HF backend."""
    url, model_dir = served
    budgets = standard_budgets()
    harness = ElasticHarness(env_config(tokenizer=str(model_dir)).agent.harness)
    tasks = list(ElasticTaskset(ElasticTasksetConfig(limit=3)))
    prompts = [harness.prompt_ids(t.data)[1] for t in tasks]
    reference = CachedReference(SERVE_PYTHON, model_dir, [(p, b) for b in budgets.values() for p in prompts])
    runs = {}

    async def verifiers_eval(index, budget):
        if budget not in runs:
            config, episodes = await _eval(url, model_dir, budget, tmp_path / f"t{budget.think}")
            assert config.env.agent.harness.id == PLUGIN_ID and type(config.env.agent.harness).__name__ == (
                "ElasticHarnessConfig")
            runs[budget] = {ep.task.data.idx: ep for ep in episodes}
        episode = runs[budget][index]
        assert episode.ok, episode.errors
        [trace] = episode.traces
        assert set(trace.rewards) == {"correct"} and trace.rewards["correct"].score in (0.0, 1.0)
        assert trace.metrics["thinking_truncated"] == float(trace.info["thinking_truncated"])
        assert trace.info["er_verdict"] in ("correct", "wrong", "no_answer")
        [call] = trace.calls
        assert call.endpoint.startswith("/v1/completions")
        branch = trace.branches[0]
        assert len(branch.logprobs) == len(branch.token_ids)
        return trace_rollout(trace)

    report = check_conformance(verifiers_eval, reference, [0, 1, 2], budgets, name="verifiers run_eval")
    assert report.ok and len(report.cases) == 6
    binding = report.cases[0].got
    assert binding.env_mask[4] == 0 and binding.thinking_truncated


def test_load_environment_builds_the_plugin_env_and_refuses_budgets_over_the_context(tmp_path):
    env = load_environment(limit=2, think_budget_tokens=8, solution_budget_tokens=8)
    assert type(env).__name__ == "SingleAgentEnv" and type(env.taskset).__name__ == "ElasticTaskset"
    assert env.config.taskset.id == PLUGIN_ID and env.config.agent.harness.think_budget_tokens == 8
    with pytest.raises(BudgetError, match="--env.agent.harness.context-length=512"):
        load_environment(think_budget_tokens=300, solution_budget_tokens=300, context_length=512)


def test_budgets_over_the_servers_context_fail_the_episode_before_any_model_call(served, tmp_path):
    url, model_dir = served
    _, [episode] = asyncio.run(_eval(url, model_dir, Budget(think=300, solution=300), tmp_path, limit=1))
    assert not episode.ok
    assert "max_model_len=512" in str(episode.errors) + str([t.errors for t in episode.traces])
    assert all(not t.calls for t in episode.traces)


def test_a_multi_token_think_end_is_refused_when_the_env_loads(tmp_path):
    """A tokenizer whose </think> is several tokens: refused naming the fix, before any server is asked."""
    require(SERVE_PYTHON.exists(), f"{SERVE_PYTHON} not found (builds the tokenizer; make venv)")
    subprocess.run([str(SERVE_PYTHON), "-m", "er_cli", "tiny-model", "--out", str(tmp_path), "--multi-token-think-end",
                    "--train-steps", "0"], check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                   timeout=300)
    with pytest.raises(TokenizerError, match=r"</think> encodes to \d+ tokens.*add_special_tokens"):
        load_environment(tokenizer=str(tmp_path), think_budget_tokens=8, solution_budget_tokens=8)
