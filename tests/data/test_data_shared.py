"""Loaders on the paper's real benchmark files (../shared/data; required in CI)."""

from __future__ import annotations

import json
import warnings

import pytest

from er_env.data import load_problems
from er_env.data.loaders import LOCAL_SETS

#: name -> (rows in the file, rows that are malformed)
EXPECTED = {
    "aime2024": (30, 0), "amc": (83, 0), "math500": (500, 0), "minerva": (272, 0), "olympiad_bench": (675, 0),
    "math_train": (7474, 4), "codeforces": (408, 0), "code_contests": (165, 0), "leetcode": (1889, 0),
}


@pytest.fixture(autouse=True)
def _point_loaders_at_shared_data(shared_data, monkeypatch):
    monkeypatch.setenv("ER_SHARED_DATA", str(shared_data))


def test_every_local_name_is_covered():
    assert set(EXPECTED) == set(LOCAL_SETS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_loads_every_row_into_the_schema(name, shared_data):
    rows, bad = EXPECTED[name]
    raw = json.loads((shared_data / LOCAL_SETS[name].path).read_text())
    assert len(raw) == rows  # the file is what the README says
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        problems = load_problems(name)
    assert len(problems) == rows - bad
    assert len({p.id for p in problems}) == len(problems)
    assert all(p.task == LOCAL_SETS[name].task and p.source == name for p in problems)
    skipped = [w for w in caught if "malformed" in str(w.message)]
    assert bool(skipped) == bool(bad)
    if bad:
        assert f"Skipped {bad} malformed row(s) of {name}" in str(skipped[0].message)
    if LOCAL_SETS[name].task == "code":
        from sandbox.core.spec import TestSpec

        for p in problems:
            TestSpec.from_dict(dict(p.tests))


def test_math_train_bad_rows_raise_on_request():
    with pytest.raises(ValueError, match="math_train row 886: no gold answer"):
        load_problems("math_train", on_bad_row="raise")


def test_math_answer_shapes_are_normalised():
    amc = load_problems("amc")
    assert amc[0].answers == ("142",) and amc[0].metadata["raw_answer"] == 142.0  # float 142.0 in the file
    minerva = load_problems("minerva")
    assert minerva[0].answers == ("9.6",)  # "['9.6\n']" list with a newline
    assert all(len(p.answers) >= 1 for p in minerva)
    olympiad = {p.id: p for p in load_problems("olympiad_bench")}
    multi = [p for p in olympiad.values() if p.answers_required == "all"]
    assert len(multi) >= 80 and all(len(p.answers) > 1 for p in multi)
    two = next(p for p in multi if set(p.answers) == {"69", "84"})  # ["$69$,$84$"]
    assert two.answers_required == "all"
    aime = load_problems("aime2024")
    assert aime[0].answers == ("204",) and aime[0].id == "aime2024/0"
    assert load_problems("math500", limit=1)[0].id == "math500/test/precalculus/807.json"


def test_code_specs_and_limits():
    cf = load_problems("codeforces")
    assert cf[0].tests["kind"] == "stdio" and cf[0].tests["time_limit_s"] == 1.0
    assert cf[0].tests["memory_limit_mb"] == 256 and cf[0].tests["cases"][0]["input"].startswith("10\n1 9")
    assert all(p.tests["time_limit_s"] and p.tests["memory_limit_mb"] for p in cf)
    cc = load_problems("code_contests")
    assert (cc[0].tests["time_limit_s"], cc[0].tests["memory_limit_mb"]) == (2.0, 512)  # {'seconds': 2}, 512000000 B
    assert cc[0].tests["cases"][0] == {"input": "5 2\nAA\nAB\nBB\nBA\nAZ\n", "output": "5 2 1 3 4 \n"}
    lc = load_problems("leetcode", limit=5)
    assert lc[0].tests["kind"] == "assert" and lc[0].tests["test_code"].rstrip().endswith("check(Solution().twoSum)")
    assert lc[0].metadata["starter_code"].startswith("class Solution:\n    def twoSum")
    assert "reference_solution" in lc[0].metadata


def test_leetcode_reference_solutions_pass_the_judge():
    """A real, external source of accepted programs: the file's own reference solutions."""
    from er_env.rewards import default_reward

    problems = load_problems("leetcode", limit=4)
    good = [f"</think>```python\n{p.metadata['reference_solution']}\n```" for p in problems]
    bad = [f"</think>```python\n{p.metadata['reference_solution'].replace('return', 'return None and', 1)}\n```"
           for p in problems]
    got = default_reward("code")(problems + problems, good + bad)
    assert [r.verdict for r in got[:4]] == ["AC"] * 4, [r.details for r in got[:4]]
    assert all(r.reward == 0.0 and not r.is_error for r in got[4:])


def test_limit_split_and_task_checks():
    assert len(load_problems("math500", limit=7)) == 7
    assert load_problems("leetcode", split="train", limit=1)[0].task == "code"
    with pytest.raises(LookupError, match="has no split 'test'"):
        load_problems("leetcode", split="test")
    with pytest.raises(ValueError, match="is a math problem but task='code'"):
        load_problems("aime2024", task="code")
