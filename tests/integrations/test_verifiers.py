"""verifiers 0.4.0 (v1): ElasticTaskset loaded by verifiers' own plugin loader and scored by Task.score.

Runs in .venv-verifiers (marker `verifiers`): verifiers pins mcp==2.0.0, OpenEnv in .venv needs mcp<2.
"""

import asyncio

import pytest

from er_env.budget import Budget
from er_env.data import load_problems
from tests.conftest import require

pytestmark = pytest.mark.verifiers

try:  # collected in every venv; only .venv-verifiers has verifiers (the fixture skips, or fails in CI)
    from verifiers.v1 import AgentConfig, Trace
    from verifiers.v1.errors import TaskError
    from verifiers.v1.trace import AgentInfo, TraceTask

    from er_integrations.verifiers import ElasticTaskset, ElasticTasksetConfig, prime_rl_sampling
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
