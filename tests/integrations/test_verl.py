"""verl: the `elastic_reasoning` agent loop on a real engine, and verl's reward manager with our compute_score.

Runs in .venv-verl (``make test-verl``; marker ``verl``). The server client is verl's interface
(``await server_manager.generate(request_id, prompt_ids=..., sampling_params=...)`` -> ``TokenOutput``)
backed by the tiny model's ``transformers`` ``generate`` (greedy), and the conformance kit
(``er_integrations.conformance``) compares the loop's ids, ``response_mask``, counts and ``thinking_truncated``
with er_env's own HF backend on the same prompts.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from er_env.budget import BudgetError
from er_env.data import load_problems
from er_env.data.schema import ProblemError
from er_integrations.conformance import Rollout, check_conformance, standard_budgets
from tests.conftest import require
from tests.integrations.hf_engine import hf_generate

pytestmark = pytest.mark.verl

try:  # collected in every venv; only .venv-verl has verl
    import numpy as np
    import torch
    from omegaconf import OmegaConf
    from verl import DataProto
    from verl.experimental.agent_loop.agent_loop import DictConfigWrap, _agent_loop_registry
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager
    from verl.workers.rollout.replica import TokenOutput

    from er_integrations.verl import compute_score, verl_rows, write_parquet
    from er_integrations.verl_agent import ElasticReasoningAgentLoop
except ImportError:  # pragma: no cover - depends on the venv
    DataProto = None


@pytest.fixture(scope="module", autouse=True)
def _needs_verl():
    require(DataProto is not None, "verl is not installed here (make venv-verl; run with .venv-verl/bin/python)")


class HFServer:
    """verl's ``LLMServerClient.generate`` over a real ``transformers`` model (greedy)."""

    def __init__(self, backend):
        self.backend = backend
        self.calls: list[tuple[str, int, dict]] = []

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
        self.calls.append((request_id, len(prompt_ids), dict(sampling_params)))
        new, logprobs, _ = hf_generate(self.backend, prompt_ids, sampling_params["max_tokens"],
                                       sampling_params["stop_token_ids"])
        return TokenOutput(token_ids=new, log_probs=logprobs, stop_reason="completed")


def _loop(backend, server, response_length=512, **budget):
    config = OmegaConf.create({"actor_rollout_ref": {"rollout": {"prompt_length": 256,
                                                                 "response_length": response_length}}})
    return ElasticReasoningAgentLoop(DictConfigWrap(config), server, backend.tokenizer, None, None,
                                     DictConfigWrap(OmegaConf.create({})), **budget)


@pytest.fixture(scope="module")
def row():
    return verl_rows(load_problems("embedded:math")[:1])[0]


def verl_adapter(backend, server):
    """The conformance kit's adapter: one agent-loop ``run`` per (problem, budget), in er_env's terms."""

    async def verl(problem, budget):
        loop = _loop(backend, server, think_budget_tokens=budget.think, solution_budget_tokens=budget.solution,
                     train_forced_token=budget.train_forced_token)
        before = len(server.calls)
        out = await loop.run({"temperature": 0.0, "logprobs": True},
                             raw_prompt=[{"role": "user", "content": problem.question}])
        calls = server.calls[before:]
        assert [c[0] for c in calls] == [calls[0][0]] * 2  # two calls, one sticky request id
        assert [c[2]["max_tokens"] for c in calls] == [budget.think, budget.solution]
        assert calls[0][2]["stop_token_ids"][0] == backend.special.think_end[0] and calls[0][2]["temperature"] == 0.0
        assert len(out.response_logprobs) == len(out.response_ids)
        extra = out.extra_fields
        return Rollout(prompt_ids=out.prompt_ids, completion_ids=out.response_ids, env_mask=out.response_mask,
                       thinking_tokens=extra["thinking_tokens"], solution_tokens=extra["solution_tokens"],
                       thinking_truncated=extra["thinking_truncated"])

    return verl


def test_agent_loop_conforms_to_er_env_backend(backend):
    """The kit: 3 problems x (binding t=4, non-binding t=300), greedy, against HFBackend.generate."""
    problems = load_problems("embedded:math")[:3]
    report = check_conformance(verl_adapter(backend, HFServer(backend)), backend, problems, standard_budgets())
    assert report.ok and len(report.cases) == 6
    # the loop's prompt is the chat template er_env's backends apply
    assert list(report.cases[0].got.prompt_ids) == backend.chat_prompt(problems[0].question)
    binding = report.cases[0]
    assert binding.got.env_mask[4] == 0 and binding.got.completion_ids[4] == backend.special.think_end[0]


def test_train_forced_token_masks_it_in(backend, row):
    async def go():
        loop = _loop(backend, HFServer(backend), think_budget_tokens=6, solution_budget_tokens=20,
                     train_forced_token=True)
        return await loop.run({}, raw_prompt=row["prompt"])

    out = asyncio.run(go())
    assert out.extra_fields["thinking_truncated"] is True and set(out.response_mask) == {1}


def test_registered_and_refuses_budgets_over_response_length(backend):
    target = _agent_loop_registry["elastic_reasoning"]["_target_"]
    assert target == "er_integrations.verl_agent.ElasticReasoningAgentLoop"
    server = HFServer(backend)

    async def go():
        _loop(backend, server, response_length=100, think_budget_tokens=64, solution_budget_tokens=64)

    with pytest.raises(BudgetError, match="response_length=100"):
        asyncio.run(go())
    assert server.calls == []


def test_reward_manager_on_a_real_dataproto_with_our_compute_score(backend, row):
    async def go():
        loop = _loop(backend, HFServer(backend), think_budget_tokens=6, solution_budget_tokens=40)
        out = await loop.run({}, raw_prompt=row["prompt"])
        prompts, responses = torch.tensor([out.prompt_ids]), torch.tensor([out.response_ids])
        data = DataProto.from_single_dict({
            "prompts": prompts, "responses": responses,
            "attention_mask": torch.ones(1, prompts.shape[1] + responses.shape[1], dtype=torch.long),
            "data_source": np.array([row["data_source"]], dtype=object),
            "reward_model": np.array([row["reward_model"]], dtype=object),
            "extra_info": np.array([dict(row["extra_info"])], dtype=object),
            "tool_extra_fields": np.array([out.extra_fields], dtype=object)})
        manager = NaiveRewardManager(OmegaConf.create({}), backend.tokenizer, compute_score)
        return out, await manager.run_single(data)

    out, got = asyncio.run(go())
    text = backend.tokenizer.decode(out.response_ids)
    problem = load_problems("embedded:math")[0]
    from er_env.rewards import MathReward

    [expected] = MathReward()([problem], [text])
    assert got["reward_score"] == expected.reward
    info = got["reward_extra_info"]
    assert info["thinking_truncated"] == 1.0 and info["thinking_tokens"] == 6
    assert info["solution_tokens"] == out.extra_fields["solution_tokens"]


def test_compute_score_grades_ground_truth_and_refuses_an_empty_row():
    right = asyncio.run(compute_score("x", "…</think> so \\boxed{12}", "12", {}))
    wrong = asyncio.run(compute_score("x", "…</think> so \\boxed{13}", json.dumps(["12"]), None))
    assert (right["score"], wrong["score"]) == (1.0, 0.0) and right["thinking_tokens"] == -1
    with pytest.raises(ProblemError, match="write_parquet"):
        asyncio.run(compute_score("x", "…", "", {}))


def test_parquet_export_has_verls_layout(tmp_path):
    import pandas as pd

    path = write_parquet(load_problems("embedded:math")[:3], tmp_path / "train.parquet")
    frame = pd.read_parquet(path)
    assert {"prompt", "data_source", "reward_model", "extra_info", "agent_name", "ability"} <= set(frame.columns)
    first = frame.iloc[0]
    assert first["agent_name"] == "elastic_reasoning" and first["prompt"][-1]["role"] == "user"
    assert json.loads(first["reward_model"]["ground_truth"]) and json.loads(first["extra_info"]["problem"])["answers"]


def test_recipe_agent_loop_yaml_instantiates_as_verl_does(backend):
    import hydra
    from verl.experimental.agent_loop.agent_loop import ToolListWrap

    from tests.conftest import REPO

    [entry] = OmegaConf.load(REPO / "er_integrations" / "recipes" / "verl_agent_loops.yaml")
    config = OmegaConf.create({"actor_rollout_ref": {"rollout": {"prompt_length": 1024, "response_length": 2049}},
                               "data": {}})

    async def go():
        return hydra.utils.instantiate(config=entry, trainer_config=DictConfigWrap(config=config),
                                       server_manager=HFServer(backend), tokenizer=backend.tokenizer, processor=None,
                                       hf_model_type=None, dataset_cls=None, data_config=DictConfigWrap(config.data),
                                       tools=ToolListWrap([]))

    loop = asyncio.run(go())
    assert isinstance(loop, ElasticReasoningAgentLoop) and entry.name == "elastic_reasoning"
    assert (loop.budget.think, loop.budget.solution, loop.budget.train_forced_token) == (1024, 1024, False)
