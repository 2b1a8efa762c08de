"""Nothing leaks into submissions (issue 16): a submitted program searches its environment, every file it can read
and the host's listening ports for the API key, a Ray token, the TLS private key and another secret of the
server's environment, and finds none of them.

The server here holds every secret the way a deployment does: the API key in its key file (and, as a careless
operator might, ``ER_API_KEY`` in its environment), ``RAY_AUTH_TOKEN`` and ``HF_TOKEN`` in its environment,
the Ray token in a chmod-600 file, and the TLS key it serves HTTPS with. The probe (tests/sandbox/leak_probe.py)
is first run outside the sandbox, where it must find them (so a clean report means something). Process backend
through the real HTTP service here; the Docker backend beside it (it fails, not skips, under CI without Docker);
the Ray Serve path in tests/cluster/test_ray_auth.py.
"""

from __future__ import annotations

import json
import os
import secrets

import pytest
from auth_helpers import new_key, self_signed, write_keys
from docker_helpers import worker_image  # noqa: F401
from leak_probe import probe_source, run_unsandboxed

from sandbox.service.client import SandboxClient
from sandbox.service.local_server import LocalServer

LIMITS = {"cpu_time_limit_s": 20.0, "wall_time_limit_s": 60.0, "output_limit_bytes": 1 << 16}


@pytest.fixture()
def secret_world(tmp_path, monkeypatch):
    """The secrets, where a deployment keeps them; the test process's environment carries them too."""
    api_key, ray_token, hf_token = new_key(), secrets.token_hex(32), "hf_" + secrets.token_urlsafe(30)
    cert, tls_key = self_signed(tmp_path)
    tls_line = tls_key.read_text().splitlines()[1]  # a line of the private key's base64
    key_file = write_keys(tmp_path / "api_keys", [f"trainer:{api_key}"])
    ray_token_file = tmp_path / "ray_token"
    ray_token_file.write_text(ray_token)
    os.chmod(ray_token_file, 0o600)
    for name, value in (("ER_API_KEY", api_key), ("RAY_AUTH_TOKEN", ray_token), ("HF_TOKEN", hf_token),
                        ("RAY_AUTH_TOKEN_PATH", str(ray_token_file))):
        monkeypatch.setenv(name, value)
    return {"secrets": {"api_key": api_key, "ray_token": ray_token, "tls_key": tls_line, "hf_token": hf_token},
            "paths": [str(key_file), str(ray_token_file), str(tls_key)], "cert": cert, "tls_key": tls_key,
            "key_file": key_file, "api_key": api_key, "dir": tmp_path}


def _report(run) -> dict:
    test = run.test if hasattr(run, "test") else run["tests"][0]
    assert test["status"] == "OK", test
    report = json.loads(test["stdout"].strip().splitlines()[-1])
    print("leak probe:", report)  # shown with -s
    return report


def test_the_probe_finds_planted_secrets_outside_the_sandbox(secret_world, tmp_path):
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "notes.txt").write_text("token: " + secret_world["secrets"]["ray_token"])
    report = run_unsandboxed(probe_source(secret_world["secrets"], secret_world["paths"]), str(planted))
    # as root outside the sandbox it reads the key files and this process's environment
    assert {"api_key", "ray_token", "tls_key", "hf_token"} <= set(report["found"]), report


def test_process_backend_submission_finds_no_secret(secret_world):
    with LocalServer(judge_workers=1, math_workers=1, api_key_file=str(secret_world["key_file"]),
                     tls_certfile=str(secret_world["cert"]), tls_keyfile=str(secret_world["tls_key"]),
                     isolation_options={"base_uid": 64400, "workers": 1}) as srv:
        source = probe_source(secret_world["secrets"], secret_world["paths"], ports=[srv.port])
        with SandboxClient(srv.url, verify=str(secret_world["cert"]), max_retries=0) as client:  # key: $ER_API_KEY
            report = _report(client.run(source, limits=LIMITS))
            health = client.health()
    assert report["found"] == [], report
    assert report["files_read"] > 0, report  # it did look around
    if "net" in health["isolation"].get("namespaces", []):
        assert report["ports_reached"] == [], report


def test_docker_backend_submission_finds_no_secret(secret_world, worker_image):  # noqa: F811
    from sandbox.service.service import SandboxService, ServiceConfig
    from sandbox.service.wire import RunRequest

    source = probe_source(secret_world["secrets"], secret_world["paths"])
    config = ServiceConfig(isolation="docker", judge_workers=1, math_workers=1,
                           isolation_options={"image": worker_image, "pool_size": 1, "auto_build": False})
    with SandboxService(config) as service:
        run = service.run(RunRequest(source=source, limits=LIMITS))
    report = _report(run)
    assert report["found"] == [] and report["ports_reached"] == [], report
    assert report["files_read"] > 0, report
