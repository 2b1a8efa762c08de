"""Ray locked down (issue 16): a cluster started as the guide says (RAY_AUTH_MODE=token, the token from a
chmod-600 file on every node, dashboard on 127.0.0.1) refuses job submissions and connections without the
token; the reward service deployed on it, behind Serve's proxy serving HTTPS (a self-signed certificate made
here), checks bearer keys on the Serve path (no / wrong / revoked / right key); a submission finds no secret
and reaches no Ray port; a cluster without token authentication is warned about loudly.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import require_ray_serve

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "sandbox"))  # the shared helpers: certificates, the leak probe
GOOD = {"code": "print(2 * int(input()))",
        "tests": {"kind": "stdio", "cases": [{"input": "2", "output": "4"}, {"input": "21", "output": "42"}]}}


def _write_private(path: Path, text: str) -> Path:
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    require_ray_serve()
    from sandbox.cluster.local import LocalRayCluster

    keys = {"alice": secrets.token_urlsafe(32), "old": secrets.token_urlsafe(32)}
    key_file = _write_private(tmp_path_factory.mktemp("keys") / "keys",
                              "".join(f"{k}:{v}\n" for k, v in keys.items()))
    from auth_helpers import self_signed

    cert, tls_key = self_signed(tmp_path_factory.mktemp("tls"))
    c = LocalRayCluster(judge_nodes=1, dashboard=True, startup_timeout_s=180)
    try:
        c.start()
        c.deploy(service={"judge_workers": 1, "math_workers": 1, "isolation": "process",
                          "isolation_options": {"workers": 1}, "api_key_file": str(key_file), "key_reload_s": 0.2},
                 health_check_period_s=2, tls_certfile=str(cert), tls_keyfile=str(tls_key))
        c.cert = str(cert)
        yield c, key_file, keys
    finally:
        c.stop()


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    return {**env, "PYTHONPATH": str(REPO), **extra}


def test_job_submission_without_the_token_is_refused(locked, tmp_path):
    cluster = locked[0]
    dashboard = f"http://127.0.0.1:{cluster.head.ports['dashboard']}"
    job = {"entrypoint": "python -c \"print('job ran')\""}
    assert httpx.post(f"{dashboard}/api/jobs/", json=job, timeout=30).status_code == 401
    wrong = {"Authorization": "Bearer " + "0" * 64}
    assert httpx.post(f"{dashboard}/api/jobs/", json=job, headers=wrong, timeout=30).status_code == 403
    assert httpx.get(f"{dashboard}/api/version", timeout=30).status_code == 401
    right = {"Authorization": f"Bearer {cluster.token}"}
    submitted = httpx.post(f"{dashboard}/api/jobs/", json=job, headers=right, timeout=60)
    assert submitted.status_code == 200, submitted.text
    job_id = submitted.json()["submission_id"]
    deadline, status = time.monotonic() + 120, ""
    while time.monotonic() < deadline and status not in ("SUCCEEDED", "FAILED", "STOPPED"):
        time.sleep(1)
        status = httpx.get(f"{dashboard}/api/jobs/{job_id}", headers=right, timeout=30).json()["status"]
    assert status == "SUCCEEDED"
    # a driver without the token (mode off, and no default token file in its HOME) is not let in either
    probe = "import ray; ray.init(address=%r, log_to_driver=False); print('CONNECTED')" % cluster.address
    proc = subprocess.run([sys.executable, "-c", probe], env=_clean_env(RAY_AUTH_MODE="disabled", HOME=str(tmp_path)),
                          capture_output=True, text=True, timeout=120)
    assert "CONNECTED" not in proc.stdout, proc.stdout[-500:]


def test_serve_path_checks_bearer_keys(locked):
    from sandbox.service.client import SandboxClient

    cluster, key_file, keys = locked
    assert cluster.url.startswith("https://")
    http = httpx.Client(verify=cluster.cert, timeout=60)
    assert http.get(f"{cluster.url}/health").status_code == 200  # liveness stays open
    for headers in ({}, {"Authorization": "Bearer " + "w" * 43}):
        resp = http.post(f"{cluster.url}/judge", json=GOOD, headers=headers)
        assert resp.status_code == 401 and resp.headers["www-authenticate"].startswith("Bearer realm=")
        assert resp.json()["error"] == "unauthorized"
    assert http.get(f"{cluster.url}/metrics").status_code == 401
    with SandboxClient(cluster.url, api_key=keys["old"], max_retries=2, verify=cluster.cert) as client:
        assert client.judge(GOOD).verdict.name == "AC"
    _write_private(key_file, f"alice:{keys['alice']}\n")  # revoke "old" on the (one) judge node
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        code = http.post(f"{cluster.url}/math/check", json={"gold": "1", "pred": "1"},
                         headers={"Authorization": f"Bearer {keys['old']}"}).status_code
        if code == 401:
            break
        time.sleep(0.2)
    assert code == 401, "the revoked key was still accepted through the proxy"
    with SandboxClient(cluster.url, api_key=keys["alice"], max_retries=2, verify=cluster.cert) as client:
        assert client.check_math("1/2", pred="0.5").correct
    http.close()


def test_a_submission_through_serve_finds_no_secret(locked):
    """The leak probe (tests/sandbox/leak_probe.py) through the Ray Serve path: the Ray token, the caller keys,
    every Ray port of every node."""
    from leak_probe import probe_source

    from sandbox.service.client import SandboxClient

    cluster, key_file, keys = locked
    ports = sorted({p for node in cluster.nodes for p in node.ports.values()} | {cluster.http_port})
    found = {"ray_token": cluster.token, **{f"api_key_{k}": v for k, v in keys.items()}}
    source = probe_source(found, [str(cluster.token_file), str(key_file)], ports)
    with SandboxClient(cluster.url, api_key=keys["alice"], max_retries=2, verify=cluster.cert) as client:
        run = client.run(source, limits={"cpu_time_limit_s": 20, "wall_time_limit_s": 60})
    report = json.loads(run.test["stdout"].strip().splitlines()[-1])
    assert report["found"] == [] and report["ports_reached"] == [], report


def test_deploy_and_check_see_token_auth_on(locked):
    cluster = locked[0]
    assert "does not enforce token authentication" not in cluster.deploy_output, cluster.deploy_output
    proc = subprocess.run([sys.executable, "-m", "sandbox.cluster", "check", "--address", cluster.address,
                           "--ray-token-file", str(cluster.token_file)], env=_clean_env(), capture_output=True,
                          text=True, timeout=120, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_bad_ray_token_file_is_refused_at_start(tmp_path):
    from sandbox.cluster.config import ClusterConfig

    loose = tmp_path / "token"
    loose.write_text("t" * 64)
    loose.chmod(0o644)
    with pytest.raises(ValueError, match=f"Ray token file {loose}.*chmod 600"):
        ClusterConfig(ray_token_file=str(loose))
    with pytest.raises(ValueError, match="--insecure-no-auth"):
        ClusterConfig(http_host="0.0.0.0")
    ClusterConfig(http_host="0.0.0.0", insecure_no_auth=True)


def test_a_cluster_without_token_auth_is_warned_about():
    require_ray_serve()
    from sandbox.cluster.local import LocalRayCluster

    with LocalRayCluster(judge_nodes=1, dashboard=True, auth=False, startup_timeout_s=180) as open_cluster:
        proc = subprocess.run([sys.executable, "-m", "sandbox.cluster", "check", "--address", open_cluster.address],
                              env=_clean_env(RAY_AUTH_MODE="disabled"), capture_output=True, text=True, timeout=120,
                              cwd=str(REPO))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "does not enforce token authentication" in proc.stderr and "RAY_AUTH_MODE=token" in proc.stderr
