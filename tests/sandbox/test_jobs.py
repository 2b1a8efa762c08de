"""Typed run jobs and outcomes (sandbox.core.jobs): the wire form round-trips, bad answers are protocol errors."""

import pytest

from sandbox.core.errors import RunnerProtocolError, SandboxError
from sandbox.core.jobs import (
    DEFAULT_LIMITS,
    FinishReason,
    Harness,
    HarnessKind,
    Limits,
    OutcomeStatus,
    RunJob,
    RunOutcome,
    TestInput,
)
from sandbox.runner.job import _validate


def test_job_wire_form_is_what_the_runner_accepts():
    job = RunJob(source="print(1)", tests=(TestInput(stdin="1", expected="1"), TestInput(stdin="2")),
                 limits=Limits(cpu_time_limit_s=2.0, wall_time_limit_s=5.0), share_process=True)
    wire = job.to_wire()
    assert wire["tests"] == [{"stdin": "1", "expected": "1"}, {"stdin": "2"}] and wire["share_process"] is True
    assert _validate(wire)["limits"]["cpu_time_limit_s"] == 2.0  # the runner's own validation takes it
    assert RunJob.from_wire(wire) == job
    call = RunJob(source="", tests=(TestInput(input="[1]"),), harness=Harness(HarnessKind.CALL, fn_name="f"))
    assert call.to_wire()["tests"] == [{"input": "[1]"}] and RunJob.from_wire(call.to_wire()) == call
    assert job.deadline_s(slack_s=1.0) == 2 * 5.0 + 1.0


def test_bad_limits_and_keys_are_rejected_with_the_value():
    with pytest.raises(ValueError, match="cpu_time_limit_s=-1"):
        Limits(cpu_time_limit_s=-1)
    with pytest.raises(ValueError, match=r"unknown limit\(s\) \['cpu_s'\]"):
        Limits.from_wire({"cpu_s": 1})
    assert Limits.from_wire({"memory_limit_bytes": None}) == DEFAULT_LIMITS
    with pytest.raises(ValueError, match="unknown RunJob keys"):
        RunJob.from_wire({"source": "", "tests": [], "bogus": 1})


def test_outcome_round_trip_and_protocol_errors():
    wire = {"protocol": 1, "status": "ok", "error": None, "compile": None, "stopped_early": False,
            "runner": {"uid": 5}, "tests": [{"index": 0, "status": "OLE", "stdout": "x", "stdout_bytes": 9,
                                             "stdout_truncated": True}]}
    outcome = RunOutcome.from_wire(wire)
    assert outcome.status is OutcomeStatus.OK and outcome.tests[0].status is FinishReason.OLE
    again = outcome.to_wire()
    assert RunOutcome.from_wire(again) == outcome and again["tests"][0]["status"] == "OLE"
    for bad in (None, {**wire, "protocol": 2}, {**wire, "status": "fine"},
                {**wire, "tests": [{"index": 0, "status": "WA"}]}, {**wire, "tests": [{"status": "OK"}]},
                {**wire, "tests": [{"index": 0, "status": "OK", "surprise": 1}]}):
        with pytest.raises(RunnerProtocolError):
            RunOutcome.from_wire(bad)
    assert issubclass(RunnerProtocolError, SandboxError)  # so the judge reports INTERNAL_ERROR, never WA
