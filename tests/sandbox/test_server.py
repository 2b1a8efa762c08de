"""The FastAPI reward service: real judge (process backend) and fakes for the error paths."""

from __future__ import annotations

import dataclasses

import pytest
from fastapi.testclient import TestClient

from sandbox.core.errors import SandboxError
from sandbox.core.jobs import RunOutcome
from sandbox.core.isolation import IsolationBackend
from sandbox.mathcheck.verdict import MathStatus, MathVerdict
from sandbox.service.config import parse_bool
from sandbox.service.server import ServerConfig, create_app
from sandbox.service.service import SandboxService

DOUBLE = {"kind": "stdio", "cases": [{"input": "2", "output": "4"}, {"input": "21", "output": "42"}]}
GOOD = "print(2 * int(input()))"


def _metric(client: TestClient, name: str, **labels: str) -> float:
    """The value of one Prometheus sample (0.0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"{name}{{{want}}}" if want else f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# ---------------------------------------------------------------------------- real judge
@pytest.fixture(scope="module")
def real():
    config = ServerConfig(judge_workers=2, math_workers=1, isolation_options={"base_uid": 63000, "workers": 2})
    service = SandboxService(config)
    with TestClient(create_app(config, service=service)) as client:
        yield client
    service.close()


def test_judge_single_and_batch_real(real):
    r = real.post("/judge", json={"code": GOOD, "tests": DOUBLE})
    assert r.status_code == 200, r.text
    (res,) = r.json()["results"]
    assert (res["verdict"], res["passed"], res["total"], res["reward"]) == ("AC", 2, 2, 1.0)

    batch = [
        {"code": "print(4)", "tests": DOUBLE},
        {"completion": f"think</think>\n```python\n{GOOD}\n```", "tests": DOUBLE},
        {"completion": "thinking that never closed ```python\nprint(4)\n```", "tests": DOUBLE},
        {"code": "def maxSum(a, b):\n    return a + b\n",
         "tests": {"kind": "call", "fn_name": "maxSum", "cases": [{"input": "1\n2", "output": "3"}]}},
        {"code": "import time\nwhile True: pass\n", "tests": {**DOUBLE, "time_limit_s": 0.5}},
    ]
    r = real.post("/judge", json={"submissions": batch})
    assert r.status_code == 200, r.text
    assert [x["verdict"] for x in r.json()["results"]] == ["WA", "AC", "NO_CODE", "AC", "TLE"]


def test_judge_request_options_reach_the_judge(real):
    # stop_on_first_failure=False runs every test; the first one fails
    spec = {"kind": "stdio", "cases": [{"input": "1", "output": "9"}, {"input": "2", "output": "4"}]}
    r = real.post("/judge", json={"code": GOOD, "tests": spec, "stop_on_first_failure": False})
    assert [t["verdict"] for t in r.json()["results"][0]["tests"]] == ["WA", "AC"]
    r = real.post("/judge", json={"code": GOOD, "tests": spec, "stop_on_first_failure": True})
    assert [t["verdict"] for t in r.json()["results"][0]["tests"]] == ["WA"]
    # a 0.3 s CPU limit turns a 1 s busy loop into TLE
    slow = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0: pass\nprint(4)"
    r = real.post("/judge", json={"code": slow, "tests": {"kind": "stdio", "cases": [{"input": "", "output": "4"}]},
                                  "limits": {"cpu_time_limit_s": 0.3}})
    assert r.json()["results"][0]["verdict"] == "TLE"


def test_run_and_math_real(real):
    r = real.post("/run", json={"source": "import sys\nprint(sys.stdin.read()[::-1])", "stdin": "abc"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok" and body["test"]["status"] == "OK" and body["test"]["stdout"] == "cba\n"
    r = real.post("/run", json={"source": "raise SystemExit(3)"})
    assert r.json()["test"]["exit_code"] == 3 and r.json()["test"]["status"] == "RE"

    r = real.post("/math/check", json={"gold": "\\frac{1}{2}", "completion": "so</think> \\boxed{0.5}"})
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["status"] == "correct"
    r = real.post("/math/check", json={"items": [
        {"gold": ["3", "4"], "pred": "4, 3", "require": "all"},
        {"gold": "7", "completion": "</think> no box here"},
        {"gold": "7", "pred": "8"},
    ]})
    assert [x["status"] for x in r.json()["results"]] == ["correct", "no_answer", "wrong"]


def test_health_metrics_and_openapi_real(real):
    r = real.get("/health")
    assert r.status_code == 200 and r.json()["ok"] is True
    assert r.json()["isolation"]["backend"] == "process" and r.json()["math"]["ok"] is True

    before = _metric(real, "er_sandbox_requests_total", endpoint="/judge", status="200")
    ac_before = _metric(real, "er_sandbox_verdicts_total", endpoint="/judge", verdict="AC")
    real.post("/judge", json={"code": GOOD, "tests": DOUBLE})
    real.post("/judge", json={"code": "x", "tests": {"kind": "nope"}})
    assert _metric(real, "er_sandbox_requests_total", endpoint="/judge", status="200") == before + 1
    assert _metric(real, "er_sandbox_verdicts_total", endpoint="/judge", verdict="AC") == ac_before + 1
    assert _metric(real, "er_sandbox_requests_total", endpoint="/judge", status="422") >= 1
    assert _metric(real, "er_sandbox_request_latency_seconds_count", endpoint="/judge") >= 2
    assert _metric(real, "er_sandbox_in_flight_requests", endpoint="/judge") == 0

    schema = real.get("/openapi.json").json()
    assert {"/judge", "/run", "/math/check", "/health", "/metrics"} <= set(schema["paths"])
    assert "JudgeRequest" in schema["components"]["schemas"]


# ---------------------------------------------------------------------------- malformed requests
@pytest.fixture(scope="module")
def fake():
    """An app over a fake backend that answers AC without running anything."""
    config = ServerConfig(max_body_bytes=20_000, max_batch_size=3, max_code_chars=1000, max_tests=5,
                          max_math_batch_size=2)
    service = SandboxService(config, backend=FakeBackend(), math_checker=FakeMath())
    with TestClient(create_app(config, service=service)) as client:
        yield client
    service.close()


class FakeBackend(IsolationBackend):
    """Answers every job as passed (or raises SandboxError when ``fail``)."""

    name = "fake"

    def __init__(self, fail: bool = False, healthy: bool = True) -> None:
        self.fail, self.healthy, self.jobs = fail, healthy, 0

    def execute(self, job):
        self.jobs += 1
        if self.fail:
            raise SandboxError("fake worker died")
        tests = [{"index": i, "status": "OK", "stdout": t.get("expected", ""), "record": None}
                 for i, t in enumerate(job.to_wire()["tests"])]
        return RunOutcome.from_wire({"protocol": 1, "status": "ok", "error": None, "compile": None, "tests": tests,
                                     "stopped_early": False, "runner": {}})

    def health(self):
        return {"backend": self.name, "ok": self.healthy}


class FakeMath:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def check_batch(self, items):
        if self.fail:
            raise RuntimeError("math pool crashed")
        return [MathVerdict.make(MathStatus.CORRECT, extracted="1") for _ in items]

    def check_answer(self, gold, pred):
        return MathVerdict.make(MathStatus.CORRECT if not self.fail else MathStatus.INTERNAL_ERROR)

    def close(self):
        pass


@pytest.mark.parametrize("body, status, words", [
    (b"{not json", 400, ["not valid JSON"]),
    (b"", 422, ["body"]),
    (b'[1, 2]', 422, ["dictionary"]),
    (b'{"code": 5, "tests": {"kind": "stdio", "cases": []}}', 422, ["code", "string"]),
    (b'{"code": "x"}', 422, ["tests"]),
    (b'{"code": "x", "completion": "y", "tests": {"kind": "stdio", "cases": []}}', 422, ["exactly one"]),
    (b'{"code": "x", "tests": {"kind": "stdio", "cases": []}, "submissions": []}', 422, ["not both"]),
    (b'{"submissions": []}', 422, ["empty"]),
    (b'{"submissions": [{"code": "x", "tests": {"kind": "stdio", "cases": []}}], "language": "cpp"}', 422,
     ["own 'language'"]),
    (b'{"code": "x", "tests": {"kind": "stdio", "cases": []}, "bogus": 1}', 422, ["bogus", "not permitted"]),
    (b'{"code": "x", "tests": {"kind": "haskell"}}', 422, ["kind", "haskell"]),
    (b'{"code": "x", "tests": {"kind": "stdio", "cases": [{"input": "1"}]}}', 422, ["tests"]),
    (b'{"code": "x", "tests": {"kind": "stdio", "cases": []}, "language": "cobol"}', 422, ["language"]),
    (b'{"code": "x", "tests": {"kind": "stdio", "cases": []}, "limits": {"cpu_time_limit_s": -1}}', 422,
     ["cpu_time_limit_s", "greater than 0"]),
    (b'{"code": "x", "tests": {"kind": "stdio", "cases": []}, "compare_mode": "fuzzy"}', 422, ["compare_mode"]),
])
def test_malformed_judge_requests_get_4xx_with_reason(fake, body, status, words):
    r = fake.post("/judge", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    for word in words:
        assert word.lower() in detail.lower(), detail


def test_malformed_math_and_run_requests(fake):
    r = fake.post("/math/check", json={"gold": "1", "completion": "x", "pred": "1"})
    assert r.status_code == 422 and "exactly one" in r.json()["detail"]
    r = fake.post("/math/check", json={"gold": [], "pred": "1"})
    assert r.status_code == 422 and "empty" in r.json()["detail"]
    r = fake.post("/math/check", json={"items": [{"gold": "1", "pred": "1"}], "require": "all"})
    assert r.status_code == 422 and "own 'require'" in r.json()["detail"]
    r = fake.post("/math/check", json={"gold": "1", "pred": "1", "require": "some"})
    assert r.status_code == 422 and "require" in r.json()["detail"]
    r = fake.post("/run", json={"stdin": "1"})
    assert r.status_code == 422 and "source" in r.json()["detail"]


def test_oversized_requests_get_413(fake):
    spec = {"kind": "stdio", "cases": [{"input": "1", "output": "1"}]}
    r = fake.post("/judge", json={"code": "x" * 30_000, "tests": spec})  # body over 20 kB
    assert r.status_code == 413 and "max_body_bytes" in r.json()["detail"]

    def chunks():  # no content-length: the body is counted as it streams
        for _ in range(30):
            yield b" " * 1000
    r = fake.post("/judge", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413

    r = fake.post("/judge", json={"submissions": [{"code": "x", "tests": spec}] * 4})
    assert r.status_code == 413 and "4 submissions" in r.json()["detail"] and "max_batch_size" in r.json()["detail"]
    r = fake.post("/judge", json={"code": "x" * 1001, "tests": spec})
    assert r.status_code == 413 and "max_code_chars" in r.json()["detail"]
    r = fake.post("/judge", json={"code": "x", "tests": {"kind": "stdio", "cases": spec["cases"] * 6}})
    assert r.status_code == 413 and "6 cases" in r.json()["detail"]
    r = fake.post("/math/check", json={"items": [{"gold": "1", "pred": "1"}] * 3})
    assert r.status_code == 413 and "max_math_batch_size" in r.json()["detail"]
    r = fake.post("/run", json={"source": "y" * 1001})
    assert r.status_code == 413


def test_fake_backend_happy_path(fake):
    r = fake.post("/judge", json={"code": "print(1)", "tests": DOUBLE})
    assert r.status_code == 200 and r.json()["results"][0]["verdict"] == "AC"
    r = fake.post("/math/check", json={"gold": "1", "pred": "1"})
    assert r.json()["results"][0]["status"] == "correct"


# ---------------------------------------------------------------------------- core failures
def _app(**kwargs):
    config = ServerConfig(**kwargs.pop("config", {}))
    service = SandboxService(config, **kwargs)
    return TestClient(create_app(config, service=service)), service


def test_core_exception_is_500_with_reason_and_counted():
    class BrokenJudge:
        def __init__(self, config, backend):
            pass

        def judge(self, submission):
            raise RuntimeError("disk on fire")

    client, service = _app(backend=FakeBackend(), math_checker=FakeMath(fail=True),
                           judge_factory=BrokenJudge)
    with client, service:
        r = client.post("/judge", json={"code": "x", "tests": DOUBLE})
        assert r.status_code == 500 and "disk on fire" in r.json()["detail"]
        r = client.post("/math/check", json={"gold": "1", "pred": "1"})
        assert r.status_code == 500 and "math pool crashed" in r.json()["detail"]
        assert _metric(client, "er_sandbox_internal_errors_total", endpoint="/judge") == 1
        assert _metric(client, "er_sandbox_internal_errors_total", endpoint="/math/check") == 1
        r = client.get("/health")
        assert r.status_code == 503 and r.json()["math"]["ok"] is False


def test_sandbox_failure_is_internal_error_verdict_never_wa():
    client, service = _app(backend=FakeBackend(fail=True, healthy=False), math_checker=FakeMath())
    with client, service:
        r = client.post("/judge", json={"code": "print(4)", "tests": DOUBLE})
        assert r.status_code == 200
        res = r.json()["results"][0]
        assert res["verdict"] == "INTERNAL_ERROR" and res["is_error"] is True and "fake worker died" in res["error"]
        assert _metric(client, "er_sandbox_internal_errors_total", endpoint="/judge") == 1
        r = client.post("/run", json={"source": "print(1)"})
        assert r.status_code == 500 and "fake worker died" in r.json()["detail"]
        r = client.get("/health")
        assert r.status_code == 503 and r.json()["isolation"]["ok"] is False


def test_overload_is_503_with_retry_after():
    client, service = _app(config={"max_pending": 2}, backend=FakeBackend(), math_checker=FakeMath())
    with client, service:
        r = client.post("/judge", json={"submissions": [{"code": "x", "tests": DOUBLE}] * 3})
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "max_pending=2" in r.json()["detail"]
        r = client.post("/judge", json={"submissions": [{"code": "x", "tests": DOUBLE}] * 2})
        assert r.status_code == 200


def test_server_config_env_mirroring():
    env = {"ER_SANDBOX_PORT": "9001", "ER_SANDBOX_JUDGE_WORKERS": "3", "ER_SANDBOX_ISOLATION": "docker",
           "ER_SANDBOX_ISOLATION_OPTIONS": '{"workers": 4}', "ER_SANDBOX_MATH_TIMEOUT_S": "1.5"}
    config = ServerConfig.from_env(env, port=9002)
    assert (config.port, config.judge_workers, config.isolation, config.math_timeout_s) == (9002, 3, "docker", 1.5)
    assert config.isolation_options == {"workers": 4} and config.host == "127.0.0.1"
    with pytest.raises(ValueError, match="ER_SANDBOX_PORT='x'"):
        ServerConfig.from_env({"ER_SANDBOX_PORT": "x"})
    with pytest.raises(ValueError, match="isolation_options must be a JSON object"):
        ServerConfig(isolation_options="[1]")
    with pytest.raises(ValueError, match="judge_workers"):
        ServerConfig(judge_workers=0)


def test_boolean_env_var_typo_is_rejected_not_false():
    @dataclasses.dataclass
    class WithFlag(ServerConfig):
        verbose: bool = dataclasses.field(default=False, metadata={"help": "a boolean setting"})

    assert WithFlag.env_values({"ER_SANDBOX_VERBOSE": "Yes"}) == {"verbose": True}
    assert WithFlag.env_values({"ER_SANDBOX_VERBOSE": "off"}) == {"verbose": False}
    with pytest.raises(ValueError, match=r"ER_SANDBOX_VERBOSE='ture' is not a boolean; use one of"):
        WithFlag.env_values({"ER_SANDBOX_VERBOSE": "ture"})
    with pytest.raises(ValueError, match="'2' is not a boolean"):
        parse_bool("X", "2")


def test_backend_pool_defaults_to_judge_workers_and_bad_options_are_clear():
    with SandboxService(ServerConfig(judge_workers=1, isolation_options={"base_uid": 63800})) as service:
        assert service.backend.config.workers == 1
    client, service = _app(config={"isolation_options": {"no_such_option": 1}}, math_checker=FakeMath())
    with client, service:
        r = client.post("/judge", json={"code": "x", "tests": DOUBLE})
        assert r.status_code == 500 and "no_such_option" in r.json()["detail"]
        assert client.get("/health").json()["isolation"]["ok"] is False
