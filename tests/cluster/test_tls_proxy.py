"""The cluster guide's reverse-proxy example, run: nginx with `sandbox/cluster/nginx-tls.conf` (only its port
and file paths rewritten to the test's) terminating TLS in front of a keyed reward service on 127.0.0.1.
Through it: HTTPS with a self-signed certificate made here, the service's 401 + WWW-Authenticate without a
key or with a wrong one, a judged submission with the right key, /health open. nginx is installed by .ci/run;
without it the test skips on a developer machine and fails in CI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sandbox.service.local_server import LocalServer
from tests.conftest import _free_port, require

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sandbox"))  # certificates and key files
from auth_helpers import new_key, self_signed, write_keys  # noqa: E402

CONF = Path(__file__).resolve().parents[2] / "sandbox" / "cluster" / "nginx-tls.conf"
GOOD = {"code": "print(2 * int(input()))",
        "tests": {"kind": "stdio", "cases": [{"input": "2", "output": "4"}, {"input": "21", "output": "42"}]}}


def _nginx_conf(tmp: Path, listen: int, upstream: int, cert: Path, key: Path) -> Path:
    text = CONF.read_text()
    for old, new in (("listen 443 ssl;", f"listen 127.0.0.1:{listen} ssl;"),
                     ("/etc/er/cert.pem", str(cert)), ("/etc/er/key.pem", str(key)),
                     ("http://127.0.0.1:8000", f"http://127.0.0.1:{upstream}")):
        assert old in text, f"{CONF} no longer has {old!r}: update this test with the guide"
        text = text.replace(old, new)
    # a private nginx: its pid, logs and temp files in the test's directory, in the foreground
    run = (f"daemon off; pid {tmp}/nginx.pid; error_log {tmp}/error.log;\n"
           + ("user root;\n" if os.geteuid() == 0 else ""))
    temps = "".join(f"    {name}_temp_path {tmp}/{name};\n"
                    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    text = run + text.replace("http {\n", f"http {{\n    access_log {tmp}/access.log;\n{temps}", 1)
    path = tmp / "nginx.conf"
    path.write_text(text)
    return path


@pytest.fixture()
def nginx_in_front(tmp_path):
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    require(nginx is not None, "nginx is not installed (apt-get install nginx-light; .ci/run installs it)")
    key = new_key()
    key_file = write_keys(tmp_path / "api_keys", [f"trainer:{key}"])
    cert, tls_key = self_signed(tmp_path)
    with LocalServer(judge_workers=1, math_workers=1, api_key_file=str(key_file)) as service:
        port = _free_port()
        conf = _nginx_conf(tmp_path, port, service.port, cert, tls_key)
        proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp_path)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"https://127.0.0.1:{port}/health", verify=str(cert), timeout=2)
                    break
                except httpx.TransportError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        out = proc.stdout.read() if proc.stdout else ""
                        log = (tmp_path / "error.log").read_text() if (tmp_path / "error.log").exists() else ""
                        pytest.fail(f"nginx did not come up: {out}\n{log}")
                    time.sleep(0.2)
            yield f"https://127.0.0.1:{port}", str(cert), key
        finally:
            proc.terminate()
            proc.wait(10)


def test_the_guides_nginx_example_terminates_tls_and_keeps_the_key_check(nginx_in_front):
    url, cert, key = nginx_in_front
    with httpx.Client(base_url=url, verify=cert, timeout=60) as client:
        assert client.get("/health").status_code == 200
        for headers in ({}, {"Authorization": "Bearer " + new_key()}):
            resp = client.post("/judge", json=GOOD, headers=headers)
            assert resp.status_code == 401, resp.text
            assert resp.headers["www-authenticate"].lower().startswith("bearer"), resp.headers
            assert set(resp.json()) == {"error", "detail"}
        resp = client.post("/judge", json=GOOD, headers={"Authorization": f"Bearer {key}"})
        assert resp.status_code == 200, resp.text
        assert [r["verdict"] for r in resp.json()["results"]] == ["AC"], resp.json()
    plain = httpx.get(url.replace("https://", "http://") + "/health", timeout=5)  # nginx: HTTP to an HTTPS port
    assert plain.status_code == 400 and "HTTPS" in plain.text, plain.text
