"""``er demo`` end to end with tiny settings, and its argument handling."""

from __future__ import annotations

import io
import json

import pytest

from er_cli import build_parser
from er_tools.demo import DemoConfig, parse_budgets, run_demo


def test_parse_budgets():
    assert [(b.think, b.solution) for b in parse_budgets("16:8, 32:32")] == [(16, 8), (32, 32)]
    for bad in ("16", "a:b", "0:4", "8:-1", ""):
        with pytest.raises(ValueError, match="e.g. '32:32"):
            parse_budgets(bad)
    with pytest.raises(ValueError, match="Bad budget '16'"):
        DemoConfig(budgets="16")


def test_cli_registers_demo_with_dataclass_flags():
    ns = build_parser().parse_args(["demo", "--budgets", "4:4", "--group-size", "3", "--math-problems", "none"])
    assert ns.command == "demo" and ns.budgets == "4:4" and ns.group_size == 3 and ns.math_problems is None
    assert callable(ns.func)


def test_demo_runs_math_and_code_under_each_budget(tiny_model_dir, tmp_path):
    from rich.console import Console

    buf = io.StringIO()
    cfg = DemoConfig(out=str(tmp_path / "demo"), budgets="4:4,12:8", math_problems=3, code_problems=2, group_size=2,
                     model=str(tiny_model_dir))
    result = run_demo(cfg, console=Console(file=buf, width=140))
    text = buf.getvalue()
    assert "Budget t=4, s=4" in text and "Budget t=12, s=8" in text and "forced cut" in text
    assert str(result.records_paths["t4_s4"]) in text.replace("\n", "")
    assert len(result.summary) == 4  # 2 budgets x 2 tasks
    for label, (t, s) in {"t4_s4": (4, 4), "t12_s8": (12, 8)}.items():
        rows = [json.loads(line) for line in result.records_paths[label].read_text().splitlines()]
        assert len(rows) == (3 + 2) * 2
        assert {r["task"] for r in rows} == {"math", "code"}
        for r in rows:
            assert r["thinking_tokens"] <= t and r["solution_tokens"] <= s and not r["is_error"]
            assert len(r["completion_ids"]) == len(r["env_mask"]) == len(r["logprobs"])
            assert r["verdict"] and r["reward"] in (0.0, 1.0)
        for row in (x for x in result.summary if (x["think_budget_tokens"], x["solution_budget_tokens"]) == (t, s)):
            mine = [r for r in rows if r["task"] == row["task"]]
            assert row["forced_cut_rate"] == sum(r["thinking_truncated"] for r in mine) / len(mine)
            assert row["thinking_tokens"] == sum(r["thinking_tokens"] for r in mine) / len(mine)
            assert row["reward"] == sum(r["reward"] for r in mine) / len(mine)
    saved = json.loads(result.summary_path.read_text())
    assert saved["config"]["budgets"] == "4:4,12:8" and len(saved["rows"]) == 4


def test_demo_model_targets_are_graded_correct():
    """The demo model's training completions earn reward 1 from the real graders."""
    from er_env.data import load_problems
    from er_env.rollout import RewardRouter
    from er_tools.demo_model import demo_completion, demo_documents
    from er_tools.tiny_model import EOS

    problems = load_problems("embedded:math") + load_problems("embedded:code")
    results = RewardRouter(None, None)(problems, [demo_completion(p) for p in problems])
    assert [r.reward for r in results] == [1.0] * len(problems), [r.verdict for r in results]
    docs = demo_documents(problems)
    assert all(d.endswith(EOS) and "</think>" in d for d in docs) and len(docs) == len(problems)


@pytest.mark.slow
def test_demo_model_earns_rewards_and_budget_cuts_reasoning(demo_model_dir, tmp_path):
    """The demo model (trained on the embedded problems) solves some of them at a large budget."""
    from rich.console import Console

    from er_tools.demo_model import is_demo_model

    model = demo_model_dir
    assert is_demo_model(model) and not is_demo_model(tmp_path)
    cfg = DemoConfig(out=str(tmp_path / "demo"), budgets="8:8,64:128", math_problems=3, code_problems=2,
                     group_size=2, temperature=0.0, model=str(model))
    result = run_demo(cfg, console=Console(file=io.StringIO(), width=140))
    small = [r for r in result.summary if r["think_budget_tokens"] == 8]
    large = [r for r in result.summary if r["think_budget_tokens"] == 64]
    assert all(r["forced_cut_rate"] == 1.0 for r in small)  # every memorised reasoning is > 8 tokens
    assert sum(r["reward"] for r in large) > 0, large
    assert all(r["grader_errors"] == 0 for r in result.summary)
