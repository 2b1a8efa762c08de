"""The reward cluster from docker-compose.yml: gateway + 2 networkless workers, judged over HTTP on localhost."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _compose(project: str, env: dict, *args: str, timeout_s: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "compose", "-p", project, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout_s)


@pytest.fixture(scope="module")
def cluster(docker_engine, tmp_path_factory):
    from sandbox.isolation.docker_image import LOCAL_BASE_IMAGE, default_base_image

    assert subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0, (
        "docker compose v2 is missing; run sandbox/docker/setup_host.sh")
    base = default_base_image()
    if base == LOCAL_BASE_IMAGE:  # offline build: the gateway's Python packages come from the host's wheelhouse
        subprocess.run(["bash", str(REPO / "sandbox/docker/build_wheelhouse.sh")], check=True, capture_output=True,
                       timeout=600)
    project = f"er-test-{uuid.uuid4().hex[:8]}"
    port = _free_port()
    key = secrets.token_urlsafe(32)
    key_file = tmp_path_factory.mktemp("compose-secret") / "api_keys"
    key_file.write_text(f"compose-test:{key}\n")
    os.chmod(key_file, 0o600)
    os.chown(key_file, 10001, 10001)  # the gateway's uid: a bind-mounted secret keeps the host file's owner
    env = {**os.environ, "ER_SANDBOX_BASE_IMAGE": base, "ER_GATEWAY_PORT": str(port),
           "ER_COMPOSE_API_KEY_FILE": str(key_file)}
    try:
        up = _compose(project, env, "up", "-d", "--build", "--scale", "worker=2", "--wait")
        if up.returncode != 0:
            logs = _compose(project, env, "logs", "--tail", "40").stdout
            pytest.fail(f"docker compose up failed:\n{up.stderr[-3000:]}\n--- logs ---\n{logs[-3000:]}")
        yield {"url": f"http://127.0.0.1:{port}", "project": project, "env": env, "key": key}
    finally:
        _compose(project, env, "down", "-v", "--remove-orphans", "-t", "5", timeout_s=300)


def test_judge_over_http(cluster):
    import httpx

    spec = {"kind": "stdio", "cases": [{"input": "2", "output": "4"}, {"input": "21", "output": "42"}]}
    unauthenticated = httpx.post(f"{cluster['url']}/judge", json={"code": "print(1)", "tests": spec}, timeout=60)
    assert unauthenticated.status_code == 401
    auth = {"Authorization": f"Bearer {cluster['key']}"}
    with httpx.Client(base_url=cluster["url"], timeout=60, headers=auth) as client:
        health = client.get("/health").json()
        assert health["ok"] and health["isolation"]["alive"] == 2, health
        ok = client.post("/judge", json={"code": "print(int(input()) * 2)", "tests": spec}).json()
        assert ok["results"][0]["verdict"] == "AC" and ok["results"][0]["meta"]["backend"] == "socket", ok
        batch = client.post("/judge", json={"submissions": [
            {"code": "print(0)", "tests": spec},
            {"code": "while True:\n    pass", "tests": {**spec, "time_limit_s": 1}},
            {"code": "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=1)\nprint(4)", "tests": spec},
        ]}).json()
        assert [r["verdict"] for r in batch["results"]] == ["WA", "TLE", "RE"], batch
        math = client.post("/math/check", json={"gold": "1/2", "pred": "0.5"}).json()
        assert math["results"][0]["status"] == "correct" and math["results"][0]["reward"] == 1.0, math


def test_workers_have_no_network_and_the_gateway_only_localhost(cluster):
    ps = _compose(cluster["project"], cluster["env"], "ps", "--format", "json")
    assert ps.returncode == 0, ps.stderr
    text = ps.stdout.strip()
    rows = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines() if line]
    workers = [r for r in rows if r["Service"] == "worker"]
    gateways = [r for r in rows if r["Service"] == "gateway"]
    assert len(workers) == 2 and len(gateways) == 1
    for row in workers:
        info = json.loads(subprocess.run(["docker", "inspect", row["ID"]], capture_output=True, text=True).stdout)[0]
        host = info["HostConfig"]
        assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"]
        assert info["NetworkSettings"]["Ports"] == {} or not info["NetworkSettings"]["Ports"]
    gw = json.loads(subprocess.run(["docker", "inspect", gateways[0]["ID"]], capture_output=True, text=True).stdout)[0]
    bindings = [b for spec in gw["HostConfig"]["PortBindings"].values() for b in spec]
    assert bindings and all(b["HostIp"] == "127.0.0.1" for b in bindings), bindings
    assert gw["Config"]["User"] == "10001:10001"
