"""Request ids: a request delivered twice is scored once (sandbox.service.idempotency)."""

from __future__ import annotations

import functools
import hashlib

import httpx
import pytest
from fastapi.testclient import TestClient

from sandbox.service.client import SandboxClient
from sandbox.service.server import ServerConfig, create_app
from sandbox.service.service import SandboxService, ServiceError
from tests.sandbox.test_server import _metric

ITEMS = {"items": [{"gold": ["2"], "completion": "</think>\\boxed{2}"},
                   {"gold": ["3"], "completion": "</think>\\boxed{4}"}]}


@pytest.fixture(scope="module")
def served():
    config = ServerConfig(judge_workers=1, math_workers=1)
    service = SandboxService(config)
    calls = []
    real = service.acheck_math

    async def counted(req):
        calls.append(req)
        if len(calls) == 1 and getattr(counted, "fail_first", False):
            raise ServiceError("the checker pool died")
        return await real(req)

    service.acheck_math = counted
    with TestClient(create_app(config, service=service)) as client:
        yield client, calls, counted
    service.close()


def test_a_repeated_request_id_is_answered_from_the_first_reply(served):
    client, calls, _ = served
    calls.clear()
    first = client.post("/math/check", json=ITEMS, headers={"X-Request-ID": "abc"})
    again = client.post("/math/check", json=ITEMS, headers={"X-Request-ID": "abc"})
    other = client.post("/math/check", json=ITEMS)  # no id: scored again
    assert first.status_code == again.status_code == other.status_code == 200
    assert first.json() == again.json() and [r["status"] for r in first.json()["results"]] == ["correct", "wrong"]
    assert len(calls) == 2
    assert _metric(client, "er_sandbox_duplicate_requests_total", endpoint="/math/check") == 1.0


def test_a_failed_reply_is_not_remembered(served):
    client, calls, counted = served
    calls.clear()
    counted.fail_first = True
    try:
        assert client.post("/math/check", json=ITEMS, headers={"X-Request-ID": "f"}).status_code == 500
        assert client.post("/math/check", json=ITEMS, headers={"X-Request-ID": "f"}).status_code == 200
    finally:
        counted.fail_first = False
    assert len(calls) == 2


def test_the_client_sends_one_id_per_body_across_retries(served, monkeypatch):
    client, _, _ = served
    body = client.post("/math/check", json=ITEMS).json()
    seen: list[tuple[str, bytes]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.headers["x-request-id"], request.content))
        if len(seen) == 1:  # the first reply is lost on the way (a proxy's 502)
            return httpx.Response(502, text="bad gateway")
        return httpx.Response(200, json=body)

    monkeypatch.setattr("sandbox.service.client.httpx.AsyncClient",
                        functools.partial(httpx.AsyncClient, transport=httpx.MockTransport(handler)))
    sandbox = SandboxClient("http://reward.test", max_retries=2, backoff_s=0)
    verdicts = sandbox.check_math_batch(ITEMS["items"])
    sandbox.close()
    assert [v.reward for v in verdicts] == [1.0, 0.0]
    assert len(seen) == 2 and seen[0] == seen[1]
    assert seen[0][0] == hashlib.sha256(seen[0][1]).hexdigest()
