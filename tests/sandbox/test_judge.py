"""Judge: verdict mapping (fake backend for failures) and end to end on the process backend."""

import asyncio

import pytest

from sandbox.core.errors import SandboxError
from sandbox.core.jobs import RunOutcome
from sandbox.core.judge import Judge, JudgeConfig, Submission
from sandbox.core.spec import SpecError
from sandbox.core.verdicts import JudgeResult, Verdict
from sandbox.isolation import get_backend
from sandbox.core.isolation import IsolationBackend

STDIO = {"kind": "stdio", "cases": [{"input": "2\n", "output": "4\n"}, {"input": "5\n", "output": "10\n"}]}


class FakeBackend(IsolationBackend):
    name = "fake"

    def __init__(self, answer):
        self.answer = answer
        self.jobs = []

    def execute(self, job):
        self.jobs.append(job.to_wire())  # what a real backend sends across the boundary
        if isinstance(self.answer, Exception):
            raise self.answer
        return RunOutcome.from_wire(self.answer)  # and how it reads the answer back


def run_ok(stdout, status="OK", **extra):
    return {"index": 0, "status": status, "stdout": stdout, "stderr": "", "record": None, "exit_code": 0,
            "signal": None, "cpu_time_s": 0.01, "wall_time_s": 0.02, "peak_memory_bytes": 1 << 20, **extra}


def outcome(*runs, status="ok"):
    return {"protocol": 1, "status": status, "error": None, "compile": None, "tests": list(runs),
            "stopped_early": False, "runner": {}}


def test_infrastructure_failures_are_internal_errors_never_wa():
    sub = Submission(spec=STDIO, code="print(1)")
    cases = [SandboxError("worker died"), {**outcome(), "status": "error", "error": "bad job"},
             outcome(run_ok("4\n"), {**run_ok("10\n"), "index": 1, "status": "IE", "error": "setup failed"}),
             outcome(run_ok("4\n")),  # fewer tests than the spec without an early stop
             outcome({"index": 0})]   # malformed run
    for answer in cases:
        result = Judge(JudgeConfig(), FakeBackend(answer)).judge(sub)
        assert result.verdict is Verdict.INTERNAL_ERROR and result.is_error and result.error, answer


def test_job_carries_limits_from_spec_and_config():
    backend = FakeBackend(outcome(run_ok("4\n"), {**run_ok("10\n"), "index": 1}))
    judge = Judge(JudgeConfig(statement_time_factor=2.0), backend)
    result = judge.judge(Submission(spec={**STDIO, "time_limit_s": 1.5, "memory_limit_mb": 256}, code="x"))
    assert result.verdict is Verdict.AC and result.passed == 2 and result.reward == 1.0
    limits = backend.jobs[0]["limits"]
    assert limits["cpu_time_limit_s"] == 3.0 and limits["wall_time_limit_s"] == 7.0
    assert limits["memory_limit_bytes"] == 256 << 20
    Judge(JudgeConfig(honour_statement_limits=False), backend).judge(
        Submission(spec={**STDIO, "time_limit_s": 1.5}, code="x"))
    assert backend.jobs[-1]["limits"]["cpu_time_limit_s"] == JudgeConfig().cpu_time_limit_s


def test_no_code_and_bad_inputs():
    judge = Judge(JudgeConfig(), FakeBackend(SandboxError("must not be called")))
    assert judge.judge(Submission(spec=STDIO, completion="thinking forever")).verdict is Verdict.NO_CODE
    assert judge.judge(Submission(spec=STDIO, completion="a</think>no block")).verdict is Verdict.NO_CODE
    with pytest.raises(SpecError):
        judge.judge(Submission(spec={"kind": "stdio"}, code="x"))
    with pytest.raises(ValueError, match="exactly one"):
        Submission(spec=STDIO)
    with pytest.raises(ValueError, match="'exact'"):
        JudgeConfig(compare_mode="exact")
    with pytest.raises(ValueError, match="wall_time_limit_s"):
        JudgeConfig(cpu_time_limit_s=10, wall_time_limit_s=5)


def test_result_round_trip():
    judge = Judge(JudgeConfig(), FakeBackend(outcome(run_ok("4\n"), {**run_ok("11\n"), "index": 1})))
    result = judge.judge(Submission(spec=STDIO, code="x"))
    assert result.verdict is Verdict.WA and result.passed == 1 and result.pass_fraction == 0.5
    assert result.tests[1].expected == "10\n" and result.tests[1].got == "11\n" and "line 1" in result.tests[1].message
    data = result.to_dict()
    assert data["verdict"] == "WA" and data["reward"] == 0.0
    assert JudgeResult.from_dict(data) == result
    assert Verdict.parse("ac") is Verdict.AC and Verdict.INVALID == 0


@pytest.fixture(scope="module")
def judge():
    backend = get_backend("process", workers=2)
    yield Judge(JudgeConfig(cpu_time_limit_s=1.0, wall_time_limit_s=3.0), backend)
    backend.close()


CALL = {"kind": "call", "fn_name": "add", "cases": [{"input": "1\n2", "output": "3"}, {"input": "[1]\n[2]", "output": "[1, 2]"}]}
ASSERT = {"kind": "assert", "test_code": "def check(candidate):\n    assert candidate([3, 1, 2]) == [1, 2, 3]\n\ncheck(Solution().sort)"}


@pytest.mark.parametrize("spec, code, verdict", [
    (STDIO, "print(int(input()) * 2)", Verdict.AC),
    (STDIO, "print(int(input()) * 2 + 1)", Verdict.WA),
    (STDIO, "while True: pass", Verdict.TLE),
    (STDIO, "x = bytearray(4 << 30)", Verdict.MLE),
    (STDIO, "raise KeyError(1)", Verdict.RE),
    (STDIO, "print(", Verdict.CE),
    (STDIO, "while True: print('x' * 100000)", Verdict.OLE),
    (CALL, "class Solution:\n    def add(self, a, b):\n        return a + b", Verdict.AC),
    (CALL, "def add(a, b):\n    return a + b", Verdict.AC),
    (CALL, "class Solution:\n    def add(self, a, b):\n        return b + a", Verdict.WA),
    (CALL, "class Solution:\n    def plus(self, a, b):\n        return a + b", Verdict.RE),
    (ASSERT, "class Solution:\n    def sort(self, a: List[int]) -> List[int]:\n        return sorted(a)", Verdict.AC),
    (ASSERT, "class Solution:\n    def sort(self, a):\n        return a", Verdict.WA),
    (ASSERT, "class Solution:\n    def sort(self, a):\n        return a[10]", Verdict.RE),
])
def test_verdicts_end_to_end(judge, spec, code, verdict):
    judge.config.output_limit_bytes = 1 << 20
    result = judge.judge(Submission(spec=spec, code=code))
    assert result.verdict is verdict, result.to_dict()
    assert result.meta["backend"] == "process"


def test_run_all_tests_option(judge):
    cfg = JudgeConfig(cpu_time_limit_s=1.0, wall_time_limit_s=3.0, stop_on_first_failure=False)
    all_tests = Judge(cfg, judge.backend).judge(Submission(spec=STDIO, code="print(10)"))
    first = judge.judge(Submission(spec=STDIO, code="print(10)"))
    assert [t.verdict for t in all_tests.tests] == [Verdict.WA, Verdict.AC] and all_tests.passed == 1
    assert len(first.tests) == 1 and first.verdict is Verdict.WA


def test_batch_and_async_keep_order(judge):
    subs = [Submission(spec=STDIO, code="print(int(input()) * 2)" if i % 2 else "print(0)") for i in range(6)]
    expected = [Verdict.WA, Verdict.AC] * 3
    assert [r.verdict for r in judge.judge_batch(subs)] == expected
    assert [r.verdict for r in asyncio.run(judge.ajudge_batch(subs))] == expected


@pytest.mark.skipif(__import__("shutil").which("g++") is None, reason="g++ not installed")
def test_cpp_submissions(judge):
    spec = {"kind": "stdio", "cases": [{"input": "3\n1 2\n5 4\n7 7\n", "output": "1 2\n4 5\n7 7\n"}]}
    good = "#include <bits/stdc++.h>\nint main(){int t;std::cin>>t;while(t--){int x,y;std::cin>>x>>y;" \
           "std::cout<<std::min(x,y)<<' '<<std::max(x,y)<<'\\n';}}"
    completion = f"plan</think>\n```cpp\n{good}\n```"
    assert judge.judge(Submission(spec=spec, completion=completion, language="cpp")).verdict is Verdict.AC
    wrong = good.replace("std::min(x,y)<<' '<<std::max(x,y)", "x<<' '<<y")
    assert judge.judge(Submission(spec=spec, code=wrong, language="cpp")).verdict is Verdict.WA
    ce = judge.judge(Submission(spec=spec, code="int main( {", language="cpp"))
    assert ce.verdict is Verdict.CE and "error" in ce.compile_output
