"""Evaluation prompts: the paper's math prompt and the official LiveCodeBench prompts."""

from __future__ import annotations

import pytest

from er_env.data.schema import Problem
from er_env.data.templates import TemplateError
from er_env.eval.prompts import LCB_FORMAT_WITH_STARTER, LCB_FORMAT_WITHOUT_STARTER, LCB_SYSTEM, eval_prompt

TESTS = {"kind": "stdio", "cases": [{"input": "1", "output": "2"}]}


class _Tok:
    chat_template = "x"

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return "<U>" + messages[0]["content"] + "<A><think>\n"

    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]


def _user(text: str) -> str:
    return text[len("<U>"): -len("<A><think>\n")]


def test_math_prompt_is_the_papers():
    p = Problem(id="m/0", task="math", question="What is 1+1?", answers=("2",))
    text, ids = eval_prompt(p, _Tok())
    assert _user(text) == "What is 1+1? Let's think step by step and output the final answer within \\boxed{}."
    assert ids == [ord(c) for c in text]
    assert _user(eval_prompt(p, _Tok(), suffix="\n\nThink for 2048 tokens.")[0]).endswith("Think for 2048 tokens.")


def test_lcb_prompts_with_and_without_starter_code():
    stdio = Problem(id="c/0", task="code", question="Read n, print n+1.\n", tests=TESTS)
    user = _user(eval_prompt(stdio, _Tok())[0])
    assert user == (f"{LCB_SYSTEM}\n\nRead n, print n+1.\n### Format: {LCB_FORMAT_WITHOUT_STARTER}\n"
                    "```python\n# YOUR CODE HERE\n```\n\n### Answer: (use the provided format with backticks)\n\n")
    starter = "class Solution:\n    def f(self, n: int) -> int:\n        "
    call = Problem(id="c/1", task="code", question="Return n+1.", tests=TESTS, metadata={"starter_code": starter})
    user = _user(eval_prompt(call, _Tok())[0])
    assert user.startswith(f"{LCB_SYSTEM}\n\nReturn n+1.\n\n### Format: {LCB_FORMAT_WITH_STARTER}\n```python\n")
    assert f"```python\n{starter}\n```\n\n### Answer" in user
    assert "You are an expert Python programmer" in _user(eval_prompt(call, _Tok(), "code")[0])  # training template


def test_prompt_errors():
    p = Problem(id="m/0", task="math", question="q", answers=("1",))
    with pytest.raises(TemplateError, match="Unknown prompt 'lbc'"):
        eval_prompt(p, _Tok(), "lbc")
    with pytest.raises(TemplateError, match="for code problems"):
        eval_prompt(p, _Tok(), "lcb")


def test_lcb_alias_reads_deepcoder_lcbv5_files_offline(tmp_path):
    """``--dataset lcb --data-files F``: DeepCoder's lcbv5 rows, rendered with the official LCB prompt."""
    import json

    from er_env.eval.config import EvalConfig
    from er_env.eval.runner import load_datasets

    rows = [
        {"problem": "Add one to n.", "starter_code": "class Solution:\n    def f(self, n: int) -> int:\n        ",
         "tests": json.dumps([{"input": "1", "output": "2", "testtype": "functional"}]),
         "metadata": json.dumps({"func_name": "f"})},
        {"problem": "Read n and print n + 1.", "tests": json.dumps([{"input": "1\n", "output": "2\n",
                                                                      "testtype": "stdin"}]), "metadata": "{}"},
    ]
    path = tmp_path / "lcbv5_test.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = EvalConfig(model="m", dataset="lcb", data_files=str(path), out=str(tmp_path / "o"))
    problems = load_datasets(cfg)["lcb"]
    assert [p.task for p in problems] == ["code", "code"]
    assert problems[0].tests["kind"] == "call" and problems[1].tests["kind"] == "stdio"
    with_starter, without = (_user(eval_prompt(p, _Tok())[0]) for p in problems)
    assert LCB_FORMAT_WITH_STARTER in with_starter and "class Solution" in with_starter
    assert LCB_FORMAT_WITHOUT_STARTER in without
