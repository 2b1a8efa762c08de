"""Row-shape detection: the official repository's files load by path, unconverted."""

from __future__ import annotations

import json
import warnings

import pytest

from er_env.data import load_problems
from er_env.data.formats import ADAPTERS, SHAPES, detect_format
from er_env.data.loaders import LOCAL_SETS
from er_env.data.schema import ProblemError
from er_env.eval.config import EvalConfig, EvalError
from er_env.eval.runner import load_datasets


@pytest.mark.parametrize("name", sorted(LOCAL_SETS))
def test_each_shared_file_by_path_equals_its_name(name, shared_data, monkeypatch):
    monkeypatch.setenv("ER_SHARED_DATA", str(shared_data))
    path = shared_data / LOCAL_SETS[name].path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # math_train's malformed rows warn both ways
        by_name, by_path = load_problems(name), load_problems(str(path))
    rows = json.loads(path.read_text())
    assert detect_format(rows, name) in {LOCAL_SETS[name].format, "olympiad_bench", "code_contests"}
    assert by_path == by_name  # same ids (source = file stem), answers, specs and metadata


def test_every_shape_names_an_adapter():
    assert {name for name, _, _ in SHAPES} <= set(ADAPTERS)


@pytest.mark.parametrize(("row", "expected"), [
    ({"problem": "1+1?", "answer": "2"}, "math"),
    ({"question": "1+1?", "answer": 2}, "math"),
    ({"problem": "q", "answer": ["2"], "is_multiple_answer": False}, "olympiad_bench"),
    ({"problem": "q", "tests": [{"input": "1\n", "output": "1\n"}]}, "codeforces"),
    ({"problem": "q", "tests": {"inputs": ["1"], "outputs": ["1"]}}, "code_contests"),
    ({"problem": "q", "tests": {"functional": "def check(candidate):\n    assert candidate(1) == 1\n"}}, "leetcode"),
    ({"problem": "q", "tests": json.dumps([{"input": "1", "output": "1", "testtype": "stdin"}]),
      "metadata": "{}"}, "deepcoder"),
    ({"question_content": "q", "public_test_cases": "[]", "private_test_cases": ""}, "lcb"),
    ({"id": "a", "task": "math", "question": "q", "answers": ["1"]}, "problem"),
])
def test_detects_each_known_shape(row, expected):
    assert detect_format([row], "rows") == expected


def test_a_few_bad_rows_do_not_change_the_verdict():
    rows = [{"problem": "no answer here"}] + [{"problem": f"{i}+0?", "answer": str(i)} for i in range(5)]
    assert detect_format(rows, "rows") == "math"


def test_unknown_shape_names_the_shapes_tried_and_the_flag(tmp_path):
    (tmp_path / "odd.json").write_text(json.dumps([{"prompt": "q", "label": "1"}]))
    with pytest.raises(ProblemError) as err:
        load_problems(str(tmp_path / "odd.json"))
    message = str(err.value)
    assert "['label', 'prompt']" in message and "--format" in message
    assert all(name in message for name, _, _ in SHAPES)


def test_explicit_format_overrides_detection(tmp_path):
    rows = [{"problem": "q", "answer": "2", "tests": [{"input": "1", "output": "1"}]}]
    (tmp_path / "both.json").write_text(json.dumps(rows))
    assert load_problems(str(tmp_path / "both.json"))[0].task == "code"  # the code shape is tried first
    assert load_problems(str(tmp_path / "both.json"), format="math")[0].task == "math"


def test_er_eval_reads_the_official_file_by_path(shared_data, tmp_path):
    path = shared_data / "math" / "aime2024.json"
    cfg = EvalConfig(model="m", dataset=str(path), out=str(tmp_path))
    problems = load_datasets(cfg)[str(path)]
    assert len(problems) == 30 and problems[0].id.startswith("aime2024/")
    (tmp_path / "odd.json").write_text(json.dumps([{"prompt": "q"}]))
    with pytest.raises(EvalError, match="fit none of the known shapes"):
        load_datasets(EvalConfig(model="m", dataset=str(tmp_path / "odd.json"), out=str(tmp_path)))
    with pytest.raises(EvalError, match="--format 'maths' is not a known row format"):
        EvalConfig(model="m", dataset=str(path), out=str(tmp_path), format="maths")
