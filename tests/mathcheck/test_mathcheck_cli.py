"""``er math check``: JSON verdicts and exit codes."""

from __future__ import annotations

import json

from er_cli import main


def run(capsys, *argv):
    code = main(["math", "check", "--workers", "1", *argv])
    return code, json.loads(capsys.readouterr().out)


def test_correct_pred(capsys):
    code, out = run(capsys, "--gold", "\\frac12", "--pred", "0.5")
    assert code == 0 and out["status"] == "correct" and out["extracted"] == "0.5"


def test_wrong_pred_and_boxed_pred(capsys):
    code, out = run(capsys, "--gold", "142.0", "--pred", "so \\boxed{143}")
    assert code == 1 and out["status"] == "wrong" and out["extracted"] == "143"


def test_completion_without_think_end_is_no_answer(capsys):
    code, out = run(capsys, "--gold", "3", "--completion", "\\boxed{3}")
    assert code == 1 and out["status"] == "no_answer"


def test_multi_part_and_alternatives(capsys):
    code, out = run(capsys, "--gold", "['69', '84']", "--require", "all", "--pred", "\\boxed{84, 69}")
    assert code == 0 and out["status"] == "correct"
    code, out = run(capsys, "--gold", "7", "--gold", "9", "--pred", "9")
    assert code == 0 and out["matched_gold"] == "9"


def test_check_on_a_reward_service_endpoint(capsys):
    """``--endpoint``: the same verdicts from a real reward service process."""
    from sandbox.service.local_server import LocalServer

    with LocalServer(judge_workers=1, math_workers=1) as server:
        code, out = run(capsys, "--gold", "\\frac12", "--pred", "0.5", "--endpoint", server.url)
        assert code == 0 and out["status"] == "correct" and out["extracted"] == "0.5"
        code, out = run(capsys, "--gold", "3", "--completion", "x</think> \\boxed{4}", "--endpoint", server.url)
        assert code == 1 and out["status"] == "wrong"
