"""MathChecker end to end: statuses, batches, pathological inputs, never hanging or raising."""

from __future__ import annotations

import pytest

from sandbox.mathcheck import GoldAnswer, MathChecker, MathCheckerConfig, MathItem, MathStatus, PoolClosedError
from sandbox.mathcheck.checker import _Task
from sandbox.mathcheck.pool import TaskResult

THINK = "<think>Let me think. Maybe \\boxed{0}.</think>\n"


def test_correct_wrong_and_no_answer(checker):
    ok = checker.check("\\frac12", THINK + "So $\\boxed{0.5}$.")
    assert (ok.status, ok.reward, ok.extracted, ok.matched_gold) == (MathStatus.CORRECT, 1.0, "0.5", "\\frac12")
    bad = checker.check("\\frac12", THINK + "So $\\boxed{0.6}$.")
    assert (bad.status, bad.reward, bad.extracted) == (MathStatus.WRONG, 0.0, "0.6")
    none = checker.check("\\frac12", THINK + "I give up.")
    assert none.status is MathStatus.NO_ANSWER and "after </think>" in none.reason
    truncated = checker.check("\\frac12", "<think>... \\boxed{0.5} and then the budget ran out")
    assert truncated.status is MathStatus.NO_ANSWER


def test_fallback_to_thinking_is_opt_in():
    completion = "<think>so \\boxed{12}</think> (solution cut)"
    with MathChecker(timeout_s=2.0, workers=1, fallback_to_thinking=True) as chk:
        assert chk.check("12", completion).status is MathStatus.CORRECT


def test_gold_forms_and_require(checker):
    assert checker.check(["7", "9"], THINK + "\\boxed{9}").matched_gold == "9"
    assert checker.check("['3', '5']", THINK + "\\boxed{5}").correct
    assert checker.check(GoldAnswer(("69", "84"), "all"), THINK + "\\boxed{84, 69}").correct
    assert checker.check("69, 84", THINK + "\\boxed{69}", require="all").status is MathStatus.WRONG
    # one box per part is accepted for a multi-part answer
    assert checker.check(["$69$,$84$"], THINK + "\\boxed{69} and \\boxed{84}", require="all").correct


def test_bad_gold_is_an_internal_error_not_wrong(checker):
    verdict = checker.check(None, THINK + "\\boxed{1}")  # type: ignore[arg-type]
    assert verdict.status is MathStatus.INTERNAL_ERROR and verdict.is_error and "None" in verdict.reason


def test_worker_failures_map_to_internal_error_or_timeout(checker):
    task = _Task("5", (), 0.0)
    crashed = checker._verdict_from(TaskResult("crashed", error="worker died (killed by signal 11)"), task, 0.1)
    assert crashed.status is MathStatus.INTERNAL_ERROR and crashed.is_error and "signal 11" in crashed.reason
    assert checker._verdict_from(TaskResult("start_failed", error="x"), task, 0).status is MathStatus.INTERNAL_ERROR
    assert checker._verdict_from(TaskResult("error", error="boom"), task, 0).status is MathStatus.INTERNAL_ERROR
    assert checker._verdict_from(TaskResult("timeout"), task, 2.0).status is MathStatus.TIMEOUT


@pytest.mark.parametrize("answer", [
    "9^{9^{9^9}}",
    "\\dfrac{5^{\\left(5^{\\left(5^{\\left(5^5\\right)}\\right)} - 4\\right)} - 5}{16}",  # math-verify issue #65
    "10^{10^{10^{10}}}!",
])
def test_huge_exponents_time_out_and_the_pool_survives(checker, answer):
    verdict = checker.check("1", THINK + f"\\boxed{{{answer}}}")
    assert verdict.status in (MathStatus.TIMEOUT, MathStatus.WRONG), verdict
    assert verdict.elapsed_s < 30
    assert checker.check("2", THINK + "\\boxed{2}").correct


def test_100kb_answer_is_wrong_without_parsing(checker):
    verdict = checker.check("1", THINK + "\\boxed{" + "1+" * 50_000 + "1}")
    assert verdict.status is MathStatus.WRONG and "max_answer_chars" in verdict.reason


def test_long_and_deeply_nested_answers_get_a_verdict():
    with MathChecker(config=MathCheckerConfig(workers=1, max_answer_chars=10**6)) as chk:
        long = chk.check("1", THINK + "\\boxed{" + "1+" * 50_000 + "1}")
        deep = chk.check("1", THINK + "\\boxed{" + "{" * 20_000 + "1" + "}" * 20_000 + "}")
        noise = chk.check("1", THINK + "\\boxed{" + "\\frac{" * 3000 + "}" * 3000 + "}")
    for verdict in (long, deep, noise):
        assert verdict.status in (MathStatus.WRONG, MathStatus.TIMEOUT, MathStatus.CORRECT), verdict
        assert not verdict.is_error, verdict
    assert not long.correct


def test_check_answer_takes_a_bare_prediction(checker):
    assert checker.check_answer("\\frac12", "0.5").correct
    assert checker.check_answer("\\frac12", "$\\frac{1}{2}$").correct
    assert checker.check_answer("\\frac12", "so \\boxed{1/2}").correct
    assert checker.check_answer("\\frac12", "").status is MathStatus.NO_ANSWER


def test_batch_keeps_order_and_mixes_forms(checker):
    items = [("1", THINK + f"\\boxed{{{i % 3}}}") for i in range(12)]
    items += [MathItem("x+1", pred="1+x"), MathItem("2", THINK + "none")]
    verdicts = checker.check_batch(items)
    assert [v.status for v in verdicts[:12]] == [MathStatus.CORRECT if i % 3 == 1 else MathStatus.WRONG
                                                 for i in range(12)]
    assert verdicts[12].correct and verdicts[13].status is MathStatus.NO_ANSWER
    assert checker.check_batch([]) == []


def test_item_and_config_validation():
    with pytest.raises(ValueError, match="exactly one of completion"):
        MathItem("1")
    with pytest.raises(ValueError, match="timeout_s must be > 0"):
        MathChecker(timeout_s=0)


def test_closed_checker_raises():
    chk = MathChecker(timeout_s=2.0, workers=1)
    chk.close()
    with pytest.raises(PoolClosedError):
        chk.check("1", THINK + "\\boxed{1}")


# prose in the box, no box at all, and controls that must not change
FALLBACK_CASES = [
    ("105", "...</think> So \\boxed{the answer is 105}.", MathStatus.WRONG, MathStatus.CORRECT),
    ("105", "...</think> The final answer is 105.", MathStatus.NO_ANSWER, MathStatus.CORRECT),
    ("\\frac{1}{2}", "...</think> Therefore the answer is $\\frac{1}{2}$.", MathStatus.NO_ANSWER, MathStatus.CORRECT),
    ("105", "...</think> So \\boxed{the answer is 104}.", MathStatus.WRONG, MathStatus.WRONG),
    ("105", "...</think> The final answer is 104.", MathStatus.NO_ANSWER, MathStatus.WRONG),
    ("105", "...</think> I cannot solve this.", MathStatus.NO_ANSWER, MathStatus.NO_ANSWER),
    ("105", "thinking 105 but never closed", MathStatus.NO_ANSWER, MathStatus.NO_ANSWER),
    ("105", "...</think> \\boxed{105}", MathStatus.CORRECT, MathStatus.CORRECT),
    ("105", "...</think> \\boxed{104}, the answer is 105", MathStatus.WRONG, MathStatus.WRONG),
]


def test_boxed_rule_is_the_default_and_the_fallback_an_option(checker):
    items = [MathItem(gold, completion) for gold, completion, _, _ in FALLBACK_CASES]
    assert [v.status for v in checker.check_batch(items)] == [want for _, _, want, _ in FALLBACK_CASES]
    with MathChecker(config=MathCheckerConfig(workers=1, answer_fallback=True)) as lenient:
        got = lenient.check_batch(items)
    assert [v.status for v in got] == [want for _, _, _, want in FALLBACK_CASES]
    assert got[0].extracted == "105" and "fallback" in got[0].reason
