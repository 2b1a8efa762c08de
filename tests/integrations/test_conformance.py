"""The conformance kit itself, against a scripted reference (every venv; no model, no stack).

The real-engine uses are in each stack's test (OpenRLHF, verl, OpenEnv, verifiers, vLLM).
"""

import asyncio

import pytest

from er_env.budget import Budget, BudgetTracker, SpecialTokens
from er_integrations.conformance import (
    ConformanceError,
    Rollout,
    check_conformance,
    mask_from_spans,
    rollout_from_completion,
    standard_budgets,
)

SPECIAL = SpecialTokens(think_end=(9,), eos=frozenset({2}))
THOUGHT = [5, 6, 7, 9]  # the scripted policy closes thinking after 3 tokens
ANSWER = [8, 8, 2]


class Scripted:
    """A reference backend whose 'model' always thinks THOUGHT then answers ANSWER (through BudgetTracker)."""

    def generate(self, prompts, budget, sampling=None):
        out = []
        for prompt in prompts:
            tracker = BudgetTracker(budget, SPECIAL, prompt)
            tracker.feed(THOUGHT)
            if not tracker.done:
                tracker.feed(ANSWER)
            out.append(tracker.result())
        return out


def _same(prompt, budget):
    return rollout_from_completion(Scripted().generate([prompt], budget)[0])


def test_an_equal_integration_passes_on_both_budgets():
    budgets = standard_budgets(binding_think=2, non_binding_think=10, solution=5)
    report = check_conformance(_same, Scripted(), [[1, 3], [1, 4, 4]], budgets)
    assert report.ok and len(report.cases) == 4
    assert "4/4 cases equal the reference" in str(report)


def test_a_wrong_mask_and_flag_are_reported_per_field():
    def trains_the_forced_token(prompt, budget):
        r = _same(prompt, budget)
        return Rollout(r.prompt_ids, r.completion_ids, [1] * len(r.env_mask), r.thinking_tokens,
                       r.solution_tokens, False)

    with pytest.raises(ConformanceError) as err:
        check_conformance(trains_the_forced_token, Scripted(), [[1, 3]],
                          {"binding": Budget(think=2, solution=5)}, name="my-stack")
    text = str(err.value)
    assert "my-stack: 0/1 cases" in text and "prompt 0, budget binding (t=2, s=5)" in text
    assert "env_mask: first difference at 2" in text and "thinking_truncated: got False, expected True" in text
    assert [d.field for d in err.value.report.cases[0].diffs] == ["env_mask", "thinking_truncated"]


def test_a_budget_that_does_not_bind_as_named_fails():
    report = check_conformance(_same, Scripted(), [[1, 3]], {"binding": Budget(think=50, solution=5)},
                               raise_on_diff=False)
    assert not report.ok and "named 'binding' but the reference closed thinking itself" in str(report)
    assert check_conformance(_same, Scripted(), [[1, 3]], {"binding": Budget(think=50, solution=5)},
                             require_binding=False).ok


def test_async_adapters_and_a_running_loop():
    async def adapter(prompt, budget):
        return _same(prompt, budget)

    async def inside_a_loop():
        return check_conformance(adapter, Scripted(), [[1, 3]], {"any": Budget(think=2, solution=5)})

    assert asyncio.run(inside_a_loop()).ok


def test_bad_adapters_are_named():
    with pytest.raises(ValueError, match="prompt_ids differ"):
        check_conformance(lambda p, b: _same([1, 1], b), Scripted(), [[1, 3]], {"x": Budget(2, 5)})
    with pytest.raises(TypeError, match="not a Rollout"):
        check_conformance(lambda p, b: {"ids": []}, Scripted(), [[1, 3]], {"x": Budget(2, 5)})
    with pytest.raises(ValueError, match="needs prompts and budgets"):
        check_conformance(_same, Scripted(), [], None)


def test_mask_from_spans_inverts_action_ranges():
    assert mask_from_spans([(10, 12), (13, 14)], 4, offset=10) == (1, 1, 0, 1)
    with pytest.raises(ValueError, match="outside the 4 completion tokens"):
        mask_from_spans([(10, 20)], 4, offset=10)
