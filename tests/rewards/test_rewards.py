"""MathReward / CodeReward: in-process on the embedded problems, over HTTP, and failure mapping."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest

from er_env.data.schema import Problem
from er_env.rewards import CodeReward, MathReward, RewardError, default_reward
from sandbox.service.local_server import LocalServer, free_port

EMBEDDED = Path(__file__).resolve().parents[2] / "er_env" / "data" / "embedded"
CODE = [Problem.from_dict(r) for r in json.loads((EMBEDDED / "code.json").read_text())]
MATH = [Problem.from_dict(r) for r in json.loads((EMBEDDED / "math.json").read_text())]
# in-process sandboxes of these tests use their own uids, apart from other test modules' backends
SERVICE = {"isolation_options": {"base_uid": 63400, "workers": 2}, "judge_workers": 2}


def fenced(code: str) -> str:
    return f"Let me think.</think>\nHere is my solution:\n```python\n{code}\n```\n"


def boxed(answer: str) -> str:
    return f"Some reasoning.</think>\nThe answer is $\\boxed{{{answer}}}$."


def code_completions() -> tuple[list[Problem], list[str]]:
    """Every embedded code problem with its reference solution, a wrong program, and no code."""
    problems, completions = [], []
    for p in CODE:
        problems += [p, p, p]
        completions += [fenced(p.metadata["reference_solution"]), fenced("print(0)"),
                        "thinking that never closed ```python\nprint(0)\n```"]
    return problems, completions


def math_completions() -> tuple[list[Problem], list[str]]:
    problems, completions = [], []
    for p in MATH:
        right = ", ".join(p.answers) if p.answers_required == "all" else p.answers[0]
        problems += [p, p, p]
        completions += [boxed(right), boxed("123456789"), "Some reasoning.</think> I am not sure."]
    return problems, completions


def _code_client_options() -> dict:
    return {"max_concurrency": 2}


@pytest.fixture(scope="module")
def code_local():
    reward = CodeReward(client_options=_code_client_options(), **SERVICE)
    yield reward
    reward.close()


@pytest.fixture(scope="module")
def math_local():
    reward = MathReward(workers=1)
    yield reward
    reward.close()


@pytest.fixture(scope="module")
def server():
    with LocalServer(judge_workers=2, math_workers=1, isolation_options={"base_uid": 63500, "workers": 2}) as srv:
        yield srv


def test_code_reward_in_process(code_local):
    problems, completions = code_completions()
    results = code_local(problems, completions)
    assert [r.verdict for r in results[0::3]] == ["AC"] * len(CODE)
    assert all(r.reward == 1.0 and not r.is_error for r in results[0::3])
    assert all(r.verdict in ("WA", "RE") and r.reward == 0.0 and not r.is_error for r in results[1::3])
    assert all(r.verdict == "no_code" and r.reward == 0.0 and not r.is_error for r in results[2::3])
    first = results[0]
    assert first.details["passed"] == first.details["total"] == 3 and len(first.details["tests"]) == 3


def test_math_reward_in_process(math_local):
    problems, completions = math_completions()
    results = math_local(problems, completions)
    assert [r.verdict for r in results[0::3]] == ["correct"] * len(MATH)
    assert [r.verdict for r in results[1::3]] == ["wrong"] * len(MATH)
    assert [r.verdict for r in results[2::3]] == ["no_answer"] * len(MATH)
    assert results[0].details["extracted"] == "5050" and results[0].reward == 1.0
    assert not any(r.is_error for r in results)


def test_async_equals_sync(code_local, math_local):
    problems, completions = code_completions()
    sync = code_local(problems[:6], completions[:6])
    asynchronous = asyncio.run(code_local.acall(problems[:6], completions[:6]))
    assert [(r.verdict, r.reward) for r in sync] == [(r.verdict, r.reward) for r in asynchronous]
    problems, completions = math_completions()
    assert [r.verdict for r in asyncio.run(math_local.acall(problems, completions))] == \
        [r.verdict for r in math_local(problems, completions)]


def test_http_mode_equals_in_process(server, code_local, math_local):
    problems, completions = code_completions()
    with CodeReward(server.url) as remote:
        a = remote(problems, completions)
    b = code_local(problems, completions)
    assert [(r.verdict, r.reward, r.is_error, r.details["passed"]) for r in a] == \
        [(r.verdict, r.reward, r.is_error, r.details["passed"]) for r in b]
    problems, completions = math_completions()
    with MathReward(server.url) as remote:
        a = remote(problems, completions)
    b = math_local(problems, completions)
    assert [(r.verdict, r.reward, r.details["extracted"]) for r in a] == \
        [(r.verdict, r.reward, r.details["extracted"]) for r in b]


def test_problem_limits_from_metadata(code_local):
    spec = {"kind": "stdio", "cases": [{"input": "", "output": "ok"}]}
    slow = fenced("import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0: pass\nprint('ok')")
    plain = Problem(id="t/slow", task="code", question="q", tests=spec)
    tight = Problem(id="t/slow-tight", task="code", question="q", tests=spec,
                    metadata={"limits": {"cpu_time_limit_s": 0.3}})
    assert [r.verdict for r in code_local([plain, tight], [slow, slow])] == ["AC", "TLE"]


def test_down_server_gives_error_results_not_zero():
    url = f"http://127.0.0.1:{free_port()}"
    options = {"max_retries": 1, "backoff_s": 0.01}
    problems, completions = code_completions()
    results = CodeReward(url, client_options=options)(problems[:3], completions[:3])
    assert all(r.is_error and r.verdict == "internal_error" and math.isnan(r.reward) for r in results)
    assert url in results[0].details["error"] and "SandboxUnavailable" in results[0].details["error"]
    results = MathReward(url, client_options=options)(MATH[:2], [boxed("5050")] * 2)
    assert all(r.is_error and r.verdict == "internal_error" for r in results)
    with pytest.raises(RewardError, match=url.replace(".", r"\.")):
        MathReward(url, client_options=options, on_reward_error="raise")(MATH[:1], [boxed("5050")])


def test_broken_spec_is_an_error_for_that_problem_only(code_local):
    broken = Problem(id="t/broken", task="code", question="q", tests={"kind": "stdio", "cases": "nope"})
    good = CODE[0]
    results = code_local([good, broken], [fenced(good.metadata["reference_solution"]), fenced("print(1)")])
    assert results[0].verdict == "AC"
    assert results[1].is_error and results[1].verdict == "internal_error" and "t/broken" in results[1].details["error"]
    with pytest.raises(RewardError, match="t/broken"):
        CodeReward(on_reward_error="raise", **SERVICE)([broken], ["x"])


def test_sandbox_internal_error_maps_to_error_result():
    from er_env.rewards.code import _result
    from sandbox.core.verdicts import JudgeResult, Verdict

    res = _result(JudgeResult(Verdict.INTERNAL_ERROR, total=3, error="worker died"))
    assert res.is_error and res.verdict == "internal_error" and res.details["error"] == "worker died"
    assert math.isnan(res.reward)
    res = _result(JudgeResult(Verdict.WA, total=3, passed=1))
    assert not res.is_error and res.verdict == "WA" and res.details["pass_fraction"] == pytest.approx(1 / 3)


def test_argument_checks(math_local):
    with pytest.raises(ValueError, match="2 problems but 1 completions"):
        math_local(MATH[:2], ["x"])
    with pytest.raises(ValueError, match="default_reward\\('code'\\)"):
        math_local(CODE[:1], ["x"])
    with pytest.raises(ValueError, match="apply to the server"):
        MathReward("http://127.0.0.1:1", timeout_s=3)
    with pytest.raises(ValueError, match="apply to the server"):
        CodeReward("http://127.0.0.1:1", python_mode="exec")
    CodeReward("http://127.0.0.1:1", cpu_time_limit_s=2.0, compare_mode="lenient")  # per-request: fine
    with pytest.raises(ValueError, match="valid keys"):
        CodeReward(python_mod="exec")  # typo, caught before anything starts
    assert isinstance(default_reward("math", "http://127.0.0.1:1"), MathReward)
    assert isinstance(default_reward("code"), CodeReward)
    with pytest.raises(ValueError, match="unknown task 'chess'"):
        default_reward("chess")
    assert math_local([], []) == []


def test_bugs_propagate_instead_of_becoming_internal_errors(monkeypatch):
    """Only the client's documented failures become error results; a programming error raises."""
    reward = MathReward()

    async def buggy(self, items, **options):
        raise TypeError("bug in the client")

    monkeypatch.setattr(type(reward.client), "acheck_math_batch", buggy)
    with pytest.raises(TypeError, match="bug in the client"):
        reward(MATH[:1], [boxed("5050")])
    reward.close()


def test_sync_and_async_paths_are_one_implementation():
    url = f"http://127.0.0.1:{free_port()}"
    options = {"max_retries": 0, "backoff_s": 0.01}
    sync = MathReward(url, client_options=options)(MATH[:2], [boxed("5050")] * 2)
    both = asyncio.run(MathReward(url, client_options=options).acall(MATH[:2], [boxed("5050")] * 2))
    assert [(r.verdict, r.is_error, r.details["kind"]) for r in sync] == \
        [(r.verdict, r.is_error, r.details["kind"]) for r in both] == [("internal_error", True, "SandboxUnavailable")] * 2


def test_unknown_on_reward_error_is_rejected():
    with pytest.raises(ValueError, match="on_reward_error must be one of .*'zero'"):
        MathReward(on_reward_error="zero")


def test_rewards_send_the_key_from_the_environment(tmp_path, monkeypatch):
    """A keyed reward server: the reward functions (and so er eval / er train with a reward endpoint) take the
    key from $ER_API_KEY_FILE; without it every reward is an error result (never a silent 0)."""
    import os
    import secrets

    key = secrets.token_urlsafe(32)
    server_keys, client_key = tmp_path / "server-keys", tmp_path / "client-key"
    server_keys.write_text(f"trainer:{key}\n")
    client_key.write_text(key + "\n")
    os.chmod(server_keys, 0o600)
    os.chmod(client_key, 0o600)
    problems, completions = math_completions()
    monkeypatch.delenv("ER_API_KEY", raising=False)
    with LocalServer(judge_workers=1, math_workers=1, api_key_file=str(server_keys),
                     isolation_options={"base_uid": 63550, "workers": 1}) as srv:
        monkeypatch.setenv("ER_API_KEY_FILE", str(client_key))
        reward = MathReward(endpoint=srv.url)
        try:
            results = reward(problems[:3], completions[:3])
            assert [r.verdict for r in results] == ["correct", "wrong", "no_answer"] and key not in repr(reward)
        finally:
            reward.close()
        monkeypatch.delenv("ER_API_KEY_FILE")
        reward = MathReward(endpoint=srv.url, client_options={"max_retries": 0})
        try:
            results = reward(problems[:1], completions[:1])
            assert results[0].is_error and "401" in str(results[0].details), results[0]
        finally:
            reward.close()
