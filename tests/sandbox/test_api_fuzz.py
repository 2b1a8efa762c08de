"""Schemathesis against the gateway's own OpenAPI schema: every generated request is answered 2xx or 4xx with a
clear ``{"error", "detail"}`` body, never a 5xx, within a bound.

The app is the real one (process isolation, real math checker): generated programs really run. Examples are
bounded per operation so the module stays well under a minute on a busy 2-core machine.
"""

from __future__ import annotations

import time

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from sandbox.service.server import ServerConfig, create_app
from sandbox.service.service import SandboxService

CONFIG = ServerConfig(judge_workers=2, math_workers=1, isolation_options={"workers": 2},
                      judge_options={"cpu_time_limit_s": 2.0, "wall_time_limit_s": 4.0}, max_batch_size=8,
                      max_tests=50)
SERVICE = SandboxService(CONFIG)
APP = create_app(CONFIG, service=SERVICE)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
#: one request's upper bound: its programs' limits (a generated request may raise them) plus slack
MAX_SECONDS = 60.0


@pytest.fixture(scope="module", autouse=True)
def _close_service():
    yield
    SERVICE.close()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_generated_request_gets_a_clear_answer(case):
    start = time.monotonic()
    response = case.call()
    elapsed = time.monotonic() - start
    where = f"{case.method} {case.path} body={str(case.body)[:300]}"
    assert response.status_code < 500, f"{where} -> {response.status_code}: {response.text[:500]}"
    assert elapsed < MAX_SECONDS, f"{where} took {elapsed:.1f} s"
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body, dict) and body.get("error") and body.get("detail"), f"{where} -> {response.text}"
