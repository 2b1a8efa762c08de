"""The TRL rollout_func: keys, shapes, masks, logprobs, live policy weights, errors."""

from __future__ import annotations

import json
import math
import types

import pytest

from er_env.backends.base import SamplingConfig
from er_env.budget import Budget, BudgetTracker, SpecialTokens
from trainers.rollout import (
    PROBLEM_COLUMN,
    TEXT_FIELD,
    ElasticRolloutFunc,
    completions_to_trl,
    make_rollout_func,
    problems_to_dataset,
)

TINY_BUDGET = Budget(think=16, solution=16)  # as in conftest.py's tiny_trainer
GROUP_SIZE = 4
KEYS = {"prompt_ids", "completion_ids", "logprobs", "env_mask", TEXT_FIELD, "er_problem_id", "thinking_tokens",
        "solution_tokens", "thinking_truncated", "think_finish_reason", "finish_reason", "er_think_budget"}


def _prompts(problems, group=GROUP_SIZE):
    """What TRL's RepeatSampler hands the rollout: each id repeated ``group`` times."""
    return [p.id for p in problems for _ in range(group)]


def test_rollout_output_matches_trl_contract(tiny_trainer, math_problems):
    prompts = _prompts(math_problems[:2])
    tiny_trainer.model.train()  # as during training: the rollout must switch to eval and back
    out = tiny_trainer.rollout_func(prompts, tiny_trainer)
    assert set(out) == KEYS
    assert all(len(v) == len(prompts) for v in out.values() if isinstance(v, list))
    assert out["er_problem_id"] == prompts
    think_end = tiny_trainer.processing_class.convert_tokens_to_ids("</think>")
    forced_total = 0
    for i in range(len(prompts)):
        ids, mask, lps = out["completion_ids"][i], out["env_mask"][i], out["logprobs"][i]
        assert len(ids) == len(mask) == len(lps) > 0
        assert out["thinking_tokens"][i] <= TINY_BUDGET.think and out["solution_tokens"][i] <= TINY_BUDGET.solution
        assert ids.count(think_end) >= 1 and "</think>" in out[TEXT_FIELD][i]
        forced = [j for j, m in enumerate(mask) if m == 0]
        assert len(forced) == (1 if out["thinking_truncated"][i] else 0)
        for j in forced:  # the forced token is </think>, with no sampling logprob
            assert ids[j] == think_end and math.isnan(lps[j])
        assert all(math.isfinite(lp) and lp <= 0 for j, lp in enumerate(lps) if j not in forced)
        forced_total += len(forced)
    assert forced_total > 0, "t=16 should force </think> in at least one of 8 completions"
    # the trainer's model is back in train mode with gradients enabled
    assert tiny_trainer.model.training
    assert all(p.requires_grad for p in tiny_trainer.model.parameters())


def test_rollout_uses_current_policy_weights(tiny_trainer, math_problems):
    import torch

    prompts = _prompts(math_problems[:1], 4)
    sampling = SamplingConfig(temperature=1.0, seed=123)

    def fresh():  # same seed, call 0: identical sampling noise
        return make_rollout_func(math_problems, TINY_BUDGET, sampling)(prompts, tiny_trainer)["completion_ids"]

    before, again = fresh(), fresh()
    assert before == again, "same weights and seed must reproduce the rollout"
    head = tiny_trainer.model.get_output_embeddings().weight
    saved = head.detach().clone()
    try:
        with torch.no_grad():
            head.mul_(-1.0)  # an in-place update, as an optimizer step would do
        after = fresh()
    finally:
        with torch.no_grad():
            head.copy_(saved)
    assert after != before, "the rollout ignored an in-place weight update (stale policy)"


def test_seeded_calls_do_not_repeat(tiny_trainer, math_problems):
    fn = make_rollout_func(math_problems, TINY_BUDGET, SamplingConfig(temperature=1.0, seed=7))
    prompts = _prompts(math_problems[:2])
    first, second = fn(prompts, tiny_trainer), fn(prompts, tiny_trainer)
    assert fn.calls == 2
    assert first["completion_ids"] != second["completion_ids"]


def test_backend_must_match_use_vllm(math_problems):
    fn = make_rollout_func(math_problems, TINY_BUDGET)
    with pytest.raises(ValueError, match="use backend 'vllm'"):
        fn([math_problems[0].id], types.SimpleNamespace(use_vllm=True))
    fn = make_rollout_func(math_problems, TINY_BUDGET, backend="vllm")
    with pytest.raises(ValueError, match="use_vllm=False"):
        fn([math_problems[0].id], types.SimpleNamespace(use_vllm=False))
    with pytest.raises(ValueError, match="Pass one or the other"):
        make_rollout_func(math_problems, TINY_BUDGET, backend="vllm", backend_factory=lambda m, t: None)
    with pytest.raises(ValueError, match="Unknown training backend 'openai'"):
        make_rollout_func(math_problems, TINY_BUDGET, backend="openai")


def test_unknown_prompt_names_the_dataset_contract(math_problems):
    fn = ElasticRolloutFunc(math_problems, TINY_BUDGET)
    with pytest.raises(KeyError, match="problems_to_dataset"):
        fn.lookup("What is 1 + 1?")
    assert fn.lookup(math_problems[1].id) is math_problems[1]


def test_problems_to_dataset_columns_and_duplicates(math_problems):
    ds = problems_to_dataset(math_problems)
    assert ds.column_names == ["prompt", PROBLEM_COLUMN, "task"]
    assert ds[0]["prompt"] == math_problems[0].id
    assert json.loads(ds[0][PROBLEM_COLUMN])["answers"] == list(math_problems[0].answers)
    with pytest.raises(ValueError, match="duplicated"):
        problems_to_dataset([math_problems[0], math_problems[0]])
    with pytest.raises(ValueError, match="no problems"):
        problems_to_dataset([])


@pytest.mark.parametrize("train_forced", [False, True])
def test_forced_token_mask_follows_budget_setting(math_problems, train_forced):
    special = SpecialTokens(think_end=(9,), eos=frozenset({2}))
    tracker = BudgetTracker(Budget(think=2, solution=2, train_forced_token=train_forced), special, [5])
    tracker.feed([7, 7], [-0.5, -0.25])  # thinking budget used up: </think> forced
    tracker.feed([4, 2], [-1.0, -0.1])
    out = completions_to_trl([tracker.result()], math_problems[:1], ["text"])
    assert out["completion_ids"] == [[7, 7, 9, 4, 2]]
    assert out["env_mask"] == [[1, 1, 1 if train_forced else 0, 1, 1]]
    lps = out["logprobs"][0]
    assert lps[:2] == [-0.5, -0.25] and math.isnan(lps[2]) and lps[3:] == [-1.0, -0.1]


def test_no_logprobs_gives_none(math_problems):
    special = SpecialTokens(think_end=(9,), eos=frozenset({2}))
    tracker = BudgetTracker(Budget(think=2, solution=2), special, [5])
    tracker.feed([7, 9, 2])
    assert completions_to_trl([tracker.result()], math_problems[:1], ["t"])["logprobs"] is None


def test_temperature_must_match_trl_scoring(tiny_trainer, math_problems):
    fn = make_rollout_func(math_problems, TINY_BUDGET, SamplingConfig(temperature=0.6))
    with pytest.raises(ValueError, match="temperature 0.6 but GRPOConfig.temperature is 1.0"):
        fn([math_problems[0].id], tiny_trainer)
