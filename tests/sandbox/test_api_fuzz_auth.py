"""The schemathesis run of test_api_fuzz.py repeated with authentication on (issue 16): every generated request
carrying a valid key gets 2xx or a clear 4xx ``{"error", "detail"}`` body, never a 5xx, within a bound; the
same requests without the key, or with a wrong one, get 401 with ``WWW-Authenticate``.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from sandbox.service.server import ServerConfig, create_app
from sandbox.service.service import SandboxService

KEY = secrets.token_urlsafe(32)
_KEY_DIR = tempfile.mkdtemp(prefix="er-fuzz-keys-")
KEY_FILE = os.path.join(_KEY_DIR, "keys")
with open(os.open(KEY_FILE, os.O_WRONLY | os.O_CREAT, 0o600), "w") as _f:
    _f.write(f"fuzzer:{KEY}\n")
AUTH = {"Authorization": f"Bearer {KEY}"}

CONFIG = ServerConfig(judge_workers=2, math_workers=1, isolation_options={"workers": 2},
                      judge_options={"cpu_time_limit_s": 2.0, "wall_time_limit_s": 4.0}, max_batch_size=8,
                      max_tests=50, api_key_file=KEY_FILE, quota_requests=64, quota_submissions=64)
SERVICE = SandboxService(CONFIG)
APP = create_app(CONFIG, service=SERVICE)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, headers=AUTH)
MAX_SECONDS = 60.0


@pytest.fixture(scope="module", autouse=True)
def _close_service():
    yield
    SERVICE.close()
    os.unlink(KEY_FILE)
    os.rmdir(_KEY_DIR)


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_generated_request_with_the_key_gets_a_clear_answer(case):
    start = time.monotonic()
    response = case.call(headers=AUTH)
    elapsed = time.monotonic() - start
    where = f"{case.method} {case.path} body={str(case.body)[:300]}"
    assert response.status_code < 500, f"{where} -> {response.status_code}: {response.text[:500]}"
    assert response.status_code != 401, f"{where}: the valid key was refused"
    assert elapsed < MAX_SECONDS, f"{where} took {elapsed:.1f} s"
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body, dict) and body.get("error") and body.get("detail"), f"{where} -> {response.text}"


@schema.parametrize()
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_generated_request_without_a_valid_key_gets_401(case):
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer " + "n" * 43}):
        response = case.call(headers=headers)
        if case.path == "/health":
            assert response.status_code in (200, 405, 503)  # open; a generated wrong method is 405
            continue
        assert response.status_code == 401, f"{case.method} {case.path} -> {response.status_code}"
        challenge = response.headers["www-authenticate"]  # schemathesis keeps each header as a list
        assert (challenge[0] if isinstance(challenge, list) else challenge).startswith("Bearer realm=")
        assert response.json()["error"] == "unauthorized"
