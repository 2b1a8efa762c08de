"""The synthetic sum task: problems, long/short traces, fine-tuning documents, splits."""

from __future__ import annotations

import re

import pytest

from er_env.data import load_problems
from er_env.rewards import MathReward
from er_tools.synthetic_arith import (
    ArithTaskConfig,
    completion,
    long_trace,
    make_problems,
    make_splits,
    sft_documents,
    short_trace,
    write_problems_jsonl,
)
from er_tools.tiny_model import BOS, EOS, THINK_END

STEP = re.compile(r"(\d+) \+ (\d+) = (\d+)")


def _thinking(text: str) -> str:
    return text.split(THINK_END)[0]


def test_short_trace_adds_the_first_two_numbers_each_step():
    text = short_trace([4, 7, 2, 9])
    assert _thinking(text) == "4 + 7 + 2 + 9 = 11 + 2 + 9 = 13 + 9 = 22.\n"
    chain = [[int(x) for x in e.split(" + ")] for e in _thinking(text).strip().rstrip(".").split(" = ")]
    assert all(sum(e) == 22 for e in chain)
    assert all(nxt == [cur[0] + cur[1], *cur[2:]] for cur, nxt in zip(chain, chain[1:]))
    assert text.endswith(f"\n{THINK_END}\n\nThe answer is \\boxed{{22}}.") and text.count(THINK_END) == 1


def test_long_trace_does_and_checks_every_addition():
    text = long_trace([4, 7, 2, 9])
    steps = [tuple(map(int, m)) for m in STEP.findall(_thinking(text))]
    assert steps == [(4, 7, 11), (4, 7, 11), (11, 2, 13), (11, 2, 13), (13, 9, 22), (13, 9, 22)]
    assert "so the sum is 11 + 2 + 9." in text and "So the sum is 22." in text
    assert text.endswith(f"\n{THINK_END}\n\nThe answer is \\boxed{{22}}.") and text.count(THINK_END) == 1


def test_long_trace_is_much_longer_than_short():
    for terms in ([1, 2, 3], [5, 5, 5, 5], [5, 1]):
        assert len(_thinking(long_trace(terms))) > 2.5 * len(_thinking(short_trace(terms)))


def test_trace_errors_name_the_fix():
    with pytest.raises(ValueError, match="at least two terms"):
        short_trace([3])
    with pytest.raises(ValueError, match="'long' or 'short'.*'medium'"):
        completion([1, 2], "medium")


def test_problems_are_distinct_deterministic_and_gold_is_the_sum():
    a = make_problems(50, seed=3)
    assert a == make_problems(50, seed=3)
    assert a != make_problems(50, seed=4)
    assert len({p.question for p in a}) == 50 and len({p.id for p in a}) == 50
    for p in a:
        terms = p.metadata["terms"]
        assert 3 <= len(terms) <= 4 and all(1 <= t <= 5 for t in terms)
        assert p.question == "What is " + " + ".join(map(str, terms)) + "?"
        assert p.answers == (str(sum(terms)),) and p.task == "math"


def test_splits_are_disjoint():
    train, ev = make_splits(n_train=550, n_eval=150, seed=0)
    assert not {p.question for p in train} & {p.question for p in ev}
    assert all(p.id.startswith("synthetic_arith/eval/") for p in ev)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="only 8"):
        make_problems(9, config=ArithTaskConfig(min_terms=3, max_terms=3, max_operand=2))
    with pytest.raises(ValueError, match="positive integer"):
        make_problems(0)
    with pytest.raises(ValueError, match="min_terms"):
        ArithTaskConfig(min_terms=4, max_terms=3)
    with pytest.raises(ValueError, match="one-digit"):
        ArithTaskConfig(max_operand=12)


def test_sft_documents_mix_long_and_short():
    problems = make_problems(400, seed=1)
    docs = sft_documents(problems, long_fraction=0.8, seed=0)
    long = [d for d in docs if "Check:" in d]
    assert 0.72 < len(long) / len(docs) < 0.88
    assert all(d.startswith(BOS) and d.endswith(EOS) for d in docs)
    first = docs[0]
    assert problems[0].question in first and "<think>\n" in first
    assert all("Check:" not in d for d in sft_documents(problems[:20], long_fraction=0.0))
    assert all("Check:" in d for d in sft_documents(problems[:20], long_fraction=1.0))
    with pytest.raises(ValueError, match="long_fraction"):
        sft_documents(problems, long_fraction=1.5)


def test_jsonl_round_trips_through_the_loader(tmp_path):
    problems = make_problems(5, seed=2)
    path = write_problems_jsonl(problems, tmp_path / "sub" / "train.jsonl")
    assert load_problems(str(path)) == problems


def test_both_traces_are_graded_correct_by_the_math_checker():
    problems = make_problems(6, seed=5)
    texts = [completion(p.metadata["terms"], s) for p in problems for s in ("long", "short")]
    wrong = [t.replace("boxed{", "boxed{1") for t in texts]
    results = MathReward()([p for p in problems for _ in range(2)] * 2, texts + wrong)
    assert [r.reward for r in results] == [1.0] * 12 + [0.0] * 12
