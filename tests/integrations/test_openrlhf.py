"""OpenRLHF: the AgentExecutor on a real engine, and OpenRLHF's own remote-reward client on a real server.

The engine is OpenRLHF's interface (``await llm_engine.generate(prompt_token_ids, sampling_params)`` ->
a vLLM-shaped ``RequestOutput``) backed by the tiny model's ``transformers`` ``generate`` (greedy,
stopping on the request's ``stop_token_ids``), and the conformance kit (``er_integrations.conformance``)
compares the executor's token ids, ``action_ranges``, counts and ``thinking_truncated`` with er_env's own
HF backend on the same prompts.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from er_env.budget import Budget, BudgetError
from er_env.data import load_problems
from er_env.data.schema import ProblemError
from er_integrations.conformance import Rollout, check_conformance, mask_from_spans, standard_budgets
from tests.conftest import require
from tests.integrations.hf_engine import hf_generate

try:  # collected in every venv; only .venv has openrlhf (make venv: pip install --no-deps openrlhf==0.11.2)
    from openrlhf.utils.agent import AgentExecutorBase, SingleTurnAgentExecutor

    from er_integrations.openrlhf import AgentExecutor, ElasticAgentExecutor, dataset_rows
except ImportError:  # pragma: no cover - depends on the venv
    AgentExecutorBase = None


@pytest.fixture(autouse=True)
def _needs_openrlhf():
    require(AgentExecutorBase is not None, "openrlhf is not installed (make venv: pip install --no-deps "
                                           "openrlhf==0.11.2 pylatexenc)")


@dataclass
class Params:
    """The fields of ``vllm.SamplingParams`` OpenRLHF and the executor touch (vLLM is not in .venv)."""

    max_tokens: int | None = None
    stop_token_ids: list[int] = field(default_factory=list)
    n: int = 1
    temperature: float = 0.0
    logprobs: int | None = 0


class HFEngine:
    """OpenRLHF's engine interface over a real ``transformers`` model (greedy)."""

    def __init__(self, backend):
        self.backend = backend
        self.calls: list[tuple[int, int | None, list[int]]] = []

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        self.calls.append((len(prompt_token_ids), sampling_params.max_tokens, list(sampling_params.stop_token_ids)))
        new, logprobs, stopped = hf_generate(self.backend, prompt_token_ids, sampling_params.max_tokens,
                                             sampling_params.stop_token_ids)
        return SimpleNamespace(outputs=[SimpleNamespace(
            token_ids=new, text=self.backend.tokenizer.decode(new), finish_reason="stop" if stopped else "length",
            logprobs=[{tok: SimpleNamespace(logprob=lp)} for tok, lp in zip(new, logprobs, strict=True)])])


@pytest.fixture(scope="module")
def problem():
    return load_problems("embedded:math")[0]


def _execute(executor, backend, problem, engine, max_length=480):
    prompt = backend.tokenizer.decode(backend.chat_prompt(problem.question))
    return asyncio.run(executor.execute(prompt, json.dumps(problem.to_dict()), Params(), max_length,
                                        backend.tokenizer, engine))


def openrlhf_adapter(backend, engine, max_length=1024):
    """The conformance kit's adapter: one ``execute`` per (problem, budget), its output in er_env's terms."""

    async def openrlhf(problem, budget):
        prompt = backend.tokenizer.decode(backend.chat_prompt(problem.question))
        executor = ElasticAgentExecutor(budget=budget, on_reward_error="raise")
        out = await executor.execute(prompt, json.dumps(problem.to_dict()), Params(), max_length, backend.tokenizer,
                                     engine)
        n = len(backend.tokenizer(text=prompt, add_special_tokens=False)["input_ids"])
        obs, logs = out["observation_tokens"], out["extra_logs"]
        assert len(out["rollout_log_probs"]) == len(obs)
        assert out["reward"] in (0.0, 1.0) and logs["reward_is_error"] == 0.0
        return Rollout(prompt_ids=obs[:n], completion_ids=obs[n:],
                       env_mask=mask_from_spans(out["action_ranges"], len(obs) - n, offset=n),
                       thinking_tokens=int(logs["thinking_tokens"]), solution_tokens=int(logs["solution_tokens"]),
                       thinking_truncated=bool(logs["thinking_truncated"]))

    return openrlhf


def test_executor_conforms_to_er_env_backend(backend):
    """The kit: 3 problems x (binding t=4, non-binding t=300, binding with the forced token trained), greedy."""
    engine = HFEngine(backend)
    budgets = {**standard_budgets(), "binding_train_forced": Budget(think=4, solution=24, train_forced_token=True)}
    report = check_conformance(openrlhf_adapter(backend, engine), backend, load_problems("embedded:math")[:3],
                               budgets)
    assert report.ok and len(report.cases) == 9
    # the engine saw the two calls per sample: thinking capped at t stopping at </think>, solution capped at s
    first_think, first_solution = engine.calls[0], engine.calls[1]
    assert first_think[1] == 4 and first_think[2][0] == backend.special.think_end[0] and first_solution[1] == 24
    case = report.cases[0]
    assert first_solution[0] == len(case.got.prompt_ids) + 4 + 1  # prompt + t + the forced </think>
    assert len(engine.calls) == 18


def test_train_forced_token_keeps_it_in_action_ranges(backend, problem):
    executor = ElasticAgentExecutor(budget=Budget(think=6, solution=20, train_forced_token=True))
    out = _execute(executor, backend, problem, HFEngine(backend))
    assert out["extra_logs"]["thinking_truncated"] == 1.0
    assert len(out["action_ranges"]) == 1 and out["action_ranges"][0][1] == len(out["observation_tokens"])


def test_module_level_agent_executor_reads_the_environment(monkeypatch):
    monkeypatch.setenv("ER_THINK_BUDGET", "128")
    monkeypatch.setenv("ER_SOLUTION_BUDGET", "64")
    executor = AgentExecutor()
    assert issubclass(AgentExecutor, AgentExecutorBase)
    assert (executor.budget.think, executor.budget.solution, executor.budget.train_forced_token) == (128, 64, False)
    monkeypatch.setenv("ER_THINK_BUDGET", "lots")
    with pytest.raises(ValueError, match="ER_THINK_BUDGET='lots'"):
        AgentExecutor()


def test_bad_input_refused_before_any_model_call(backend, problem):
    engine = HFEngine(backend)
    executor = ElasticAgentExecutor(budget=Budget(think=300, solution=300))
    with pytest.raises(BudgetError, match="--generate.max_len=480"):
        _execute(executor, backend, problem, engine)
    prompt = backend.tokenizer.decode(backend.chat_prompt(problem.question))
    with pytest.raises(ProblemError, match="--data.label_key"):
        asyncio.run(executor.execute(prompt, "", Params(), 4096, backend.tokenizer, engine))
    with pytest.raises(ProblemError, match="tests"):
        asyncio.run(ElasticAgentExecutor(budget=Budget(4, 4), task="code").execute(
            prompt, "print(1)", Params(), 4096, backend.tokenizer, engine))
    assert engine.calls == []


def test_dataset_rows_carry_the_problem_as_label():
    [row] = dataset_rows(load_problems("embedded:math")[:1])
    assert row["prompt"][-1]["role"] == "user" and json.loads(row["label"])["answers"]


# ----------------------------------------------------------------------------- remote reward
@pytest.fixture(scope="module")
def reward_server():
    """The reward service (sandbox app + the OpenRLHF route through ER_EXTRA_ROUTES) on loopback."""
    import os

    from sandbox.service.local_server import LocalServer

    before = os.environ.get("ER_EXTRA_ROUTES")
    os.environ["ER_EXTRA_ROUTES"] = "er_integrations.openrlhf_reward:routes"
    try:
        with LocalServer() as server:
            yield server.url
    finally:
        if before is None:
            os.environ.pop("ER_EXTRA_ROUTES")
        else:
            os.environ["ER_EXTRA_ROUTES"] = before


def test_openrlhf_http_client_against_the_reward_service(reward_server):
    problems = load_problems("embedded:math")[:2]
    gold = problems[0].answers[0]
    prompts = ["<｜User｜>q0<｜Assistant｜><think>\n", "<｜User｜>q1<｜Assistant｜><think>\n"]
    queries = [prompts[0] + f"hmm</think> so \\boxed{{{gold}}}", prompts[1] + "hmm</think> \\boxed{no}"]
    labels = [json.dumps(problems[0].to_dict()), problems[1].answers[0]]
    client = SingleTurnAgentExecutor(remote_rm_url=reward_server + "/openrlhf/reward")
    [reply] = asyncio.run(client._fetch_rewards_via_http(queries, prompts, labels))
    assert reply["rewards"] == [1.0, 0.0] and reply["scores"] == [1.0, 0.0]
    assert reply["extra_logs"] == {"correct": [1.0, 0.0]}


def test_reward_service_refuses_a_label_without_an_answer(reward_server):
    import httpx

    resp = httpx.post(reward_server + "/openrlhf/reward", json={"query": ["x"], "prompts": [""], "labels": [""]})
    assert resp.status_code == 422 and "--data.label_key" in resp.json()["detail"]


def test_the_mounted_route_has_its_own_metrics_label(reward_server):
    import httpx

    httpx.post(reward_server + "/openrlhf/reward", json={"query": ["x"], "prompts": [""], "labels": [""]})
    text = httpx.get(reward_server + "/metrics").text
    assert 'er_sandbox_requests_total{endpoint="/openrlhf/reward",status="422"}' in text
