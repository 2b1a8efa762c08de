"""PhaseDriver (the request-level protocol driver of the vLLM/OpenAI backends) on fake engines."""

from __future__ import annotations

import json

import pytest

from er_env.backends.base import BackendError
from er_env.backends.two_phase import PhaseDriver, PhaseOutput
from er_env.tokens import model_eos_ids
from er_env.budget import Budget, BudgetTracker, Phase, SpecialTokens

END, EOS, START = 9, 2, 8
SP = SpecialTokens(think_end=(END,), eos=frozenset({EOS}), think_start=(START,))
SP_MULTI = SpecialTokens(think_end=(6, 7), eos=frozenset({EOS}), think_start=(START,))


def _trackers(n=1, budget=None, special=SP, prompt=(1, START, 4)):
    budget = budget or Budget(think=3, solution=2)
    return [BudgetTracker(budget, special, list(prompt)) for _ in range(n)]


def _out(ids, finish="length"):
    return PhaseOutput(tuple(ids), tuple(-1.0 for _ in ids), finish)


def test_two_rounds_then_done():
    trs = _trackers()
    driver = PhaseDriver(trs)
    (r1,) = driver.next_requests()
    assert (r1.prompt_ids, r1.max_tokens, r1.stop_token_ids, r1.stop_strings) == ((1, START, 4), 3, (END, EOS), ())
    driver.apply([_out([5, 5, 5])])
    (r2,) = driver.next_requests()
    assert (r2.prompt_ids, r2.max_tokens, r2.stop_token_ids) == ((1, START, 4, 5, 5, 5, END), 2, (EOS,))
    driver.apply([_out([3, EOS], "stop")])
    assert driver.next_requests() == [] and trs[0].result().finish_reason == "eos"


def test_engine_length_limit_ends_the_sample():
    trs = _trackers(budget=Budget(think=3, solution=5))
    driver = PhaseDriver(trs)
    driver.next_requests()
    driver.apply([_out([5, 5, 5])])
    driver.next_requests()
    driver.apply([_out([3], "length")])  # context full after one solution token
    assert driver.next_requests() == []
    assert trs[0].result().finish_reason == "length" and trs[0].solution_tokens == 1


def test_empty_answer_ends_with_length_and_unexplained_stop_is_an_error():
    (tr,) = trs = _trackers(budget=Budget(think=3, solution=5))
    driver = PhaseDriver(trs)
    driver.next_requests()
    driver.apply([_out([5, END], "stop")])
    driver.next_requests()
    driver.apply([_out([], "length")])
    assert driver.next_requests() == [] and tr.result().finish_reason == "length"
    driver = PhaseDriver(_trackers())
    driver.next_requests()
    with pytest.raises(BackendError, match=r"stopped .* after ids \[5, 4\].*eos_ids"):
        driver.apply([_out([5, 4], "stop")])  # 4 ends sequences for the engine, unknown to the tracker


def test_multi_token_delimiter_uses_stop_string_and_retries_on_text_only_match():
    (tr,) = trs = _trackers(special=SP_MULTI, budget=Budget(think=6, solution=2))
    driver = PhaseDriver(trs, "</think>")
    (r1,) = driver.next_requests()
    assert r1.stop_strings == ("</think>",) and r1.stop_token_ids == (EOS,)
    driver.apply([_out([5, 66], "stop")])  # text matched via another tokenization: go on
    (r2,) = driver.next_requests()
    assert tr.phase is Phase.THINKING and r2.max_tokens == 4 and r2.prompt_ids[-2:] == (5, 66)
    driver.apply([_out([6, 7], "stop")])
    (r3,) = driver.next_requests()
    assert r3.stop_strings == () and tr.phase is Phase.SOLUTION


def test_native_budget_request_and_continuation_when_engine_agrees():
    (tr,) = trs = _trackers(prompt=(1, START, 4))
    driver = PhaseDriver(trs, native_thinking_budget=True)
    (r1,) = driver.next_requests()
    assert r1.thinking_token_budget == 3 + 1  # the prompt token after <think> counts for vLLM
    assert (r1.max_tokens, r1.stop_token_ids) == (3 + 1 + 2, (EOS,))
    driver.apply([_out([5, 5, 5, END, 3, 3, 3])])  # engine forced END after 3, then solution
    assert driver.next_requests() == []
    res = tr.result()
    assert res.completion_ids == (5, 5, 5, END, 3, 3) and res.forced_mask == (0, 0, 0, 1, 0, 0)
    assert res.finish_reason == "budget"


def test_native_budget_falls_back_when_engine_disagrees():
    (tr,) = trs = _trackers(prompt=(1, 4))
    driver = PhaseDriver(trs, native_thinking_budget=True)
    (r1,) = driver.next_requests()
    assert r1.thinking_token_budget == 3  # no <think> in the prompt
    driver.apply([_out([5, 5, 5, 5, END, 3])])  # engine thought longer: its solution is dropped
    (r2,) = driver.next_requests()
    assert r2.prompt_ids == (1, 4, 5, 5, 5, END) and r2.max_tokens == 2 and r2.thinking_token_budget is None


def test_max_rounds_guard_and_output_count_check():
    trs = _trackers(special=SP_MULTI, budget=Budget(think=50, solution=2))
    driver = PhaseDriver(trs, max_rounds=2)
    for _ in range(2):
        driver.next_requests()
        driver.apply([_out([5], "stop")])
    assert driver.next_requests() == [] and trs[0].result().finish_reason == "length"
    driver = PhaseDriver(_trackers())
    driver.next_requests()
    with pytest.raises(ValueError, match="2 engine outputs for 1 requests"):
        driver.apply([_out([5]), _out([5])])


def test_model_eos_ids_adds_generation_config(tmp_path):
    class Tok:
        eos_token_id = 2
        name_or_path = str(tmp_path)

    assert model_eos_ids(Tok()) == [2]
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [7, 2]}))
    assert model_eos_ids(Tok()) == [2, 7]


def test_prompt_checks():
    from er_env.backends.two_phase import token_id_prompts

    assert token_id_prompts([(1, 2), [3]]) == [[1, 2], [3]]
    with pytest.raises(TypeError, match="text"):
        token_id_prompts(["hello"])
    with pytest.raises(ValueError, match=r"prompts\[1\] is empty"):
        token_id_prompts([[1], []])
    with pytest.raises(ValueError, match="non-integer"):
        token_id_prompts([[1, 2.5]])
