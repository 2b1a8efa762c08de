"""The embedded demo problem set is valid: answers recomputed, reference programs accepted by the judge."""

from __future__ import annotations

import math
import re
from fractions import Fraction

import pytest

from er_env.data import load_problems
from er_env.data.schema import Problem

MATH = load_problems("embedded:math")
CODE = load_problems("embedded:code")


def _value(latex: str):
    m = re.fullmatch(r"\\frac\{(-?\d+)\}\{(\d+)\}", latex)
    return Fraction(int(m.group(1)), int(m.group(2))) if m else int(latex)


def test_sizes_ids_and_schema():
    assert len(MATH) == 13 and len(CODE) == 8
    ids = [p.id for p in MATH + CODE]
    assert len(set(ids)) == len(ids)
    assert all(p.source == "embedded" for p in MATH + CODE)
    assert {p.tests["kind"] for p in CODE} == {"stdio", "call", "assert"}
    assert [p.answers_required for p in MATH].count("all") == 1


@pytest.mark.parametrize("problem", MATH, ids=lambda p: p.id)
def test_math_answers_match_an_independent_computation(problem: Problem):
    computed = eval(problem.metadata["check"], {"math": math, "Fraction": Fraction})  # our own trusted file
    if problem.answers_required == "all":
        assert sorted(_value(a) for a in problem.answers) == sorted(computed)
    else:
        assert _value(problem.answers[0]) == computed


def test_spec_dicts_parse_with_the_sandbox():
    from sandbox.core.spec import TestSpec

    for p in CODE:
        spec = TestSpec.from_dict(dict(p.tests))
        assert spec.num_tests >= 1 and spec.time_limit_s == 2.0


def test_graders_accept_gold_and_reject_wrong_answers():
    """The real local rewards: each gold answer / reference program scores 1, a wrong one 0."""
    from er_env.rewards import default_reward

    math_reward = default_reward("math")
    good = [f"Working.</think>The answer is $\\boxed{{{', '.join(p.answers)}}}$." for p in MATH]
    bad = ["Working.</think>The answer is $\\boxed{-12345}$." for _ in MATH]
    got = math_reward(MATH + MATH, good + bad)
    assert [r.reward for r in got] == [1.0] * len(MATH) + [0.0] * len(MATH), [(r.verdict, r.details) for r in got]
    assert not any(r.is_error for r in got)

    code_reward = default_reward("code")
    good = [f"Plan.</think>\n```python\n{p.metadata['reference_solution']}```" for p in CODE]
    bad = ["Plan.</think>\n```python\nprint(0)\n```" for _ in CODE]
    got = code_reward(CODE + CODE, good + bad)
    assert [r.reward for r in got[: len(CODE)]] == [1.0] * len(CODE), [(r.verdict, r.details) for r in got]
    assert all(r.reward == 0.0 and not r.is_error for r in got[len(CODE):]), [r.verdict for r in got[len(CODE):]]
