"""Transport security and per-key quotas of the reward service on real loopback servers (issue 16).

- TLS: the server's own HTTPS with a self-signed certificate generated here; the client verifies it against
  that certificate, refuses it against the system CAs, and a certificate that does not match its key (or a
  world-readable key) stops the server at start with the files named.
- Quotas: one client floods (many concurrent requests of slow programs) and gets 429 + Retry-After, while
  another client's latency stays within its normal range; the rejections are in /metrics by key id.
"""

from __future__ import annotations

import os
import statistics
import threading
import time

import httpx
import pytest
from auth_helpers import new_key, self_signed, write_keys

from sandbox.service.auth import check_tls
from sandbox.service.client import SandboxClient, SandboxUnavailable
from sandbox.service.local_server import LocalServer

DOUBLE = {"kind": "stdio", "cases": [{"input": "2", "output": "4"}, {"input": "21", "output": "42"}]}
GOOD = {"code": "print(2 * int(input()))", "tests": DOUBLE}
SLOW = {"code": "import time\ntime.sleep(0.5)\nprint(4)", "tests": {"kind": "stdio",
                                                                  "cases": [{"input": "", "output": "4"}]}}


# ---------------------------------------------------------------------------- TLS
def test_tls_checks_name_the_files(tmp_path):
    cert_a, key_a = self_signed(tmp_path, "a")
    cert_b, key_b = self_signed(tmp_path, "b")
    check_tls(str(cert_a), str(key_a))
    with pytest.raises(ValueError, match=f"{key_b} does not match certificate {cert_a}"):
        check_tls(str(cert_a), str(key_b))
    with pytest.raises(ValueError, match="does not exist"):
        check_tls(str(cert_a), str(tmp_path / "missing.key"))
    os.chmod(key_a, 0o604)
    with pytest.raises(ValueError, match=f"{key_a}.*chmod 600"):
        check_tls(str(cert_a), str(key_a))


def test_https_with_a_self_signed_certificate(tmp_path):
    cert, key = self_signed(tmp_path)
    api_key = new_key()
    keys = write_keys(tmp_path / "keys", [f"trainer:{api_key}"])
    with LocalServer(judge_workers=1, math_workers=1, api_key_file=str(keys), tls_certfile=str(cert),
                     tls_keyfile=str(key), isolation_options={"base_uid": 64100, "workers": 1}) as srv:
        assert srv.url.startswith("https://127.0.0.1:")
        with SandboxClient(srv.url, api_key=api_key, verify=str(cert), max_retries=0) as client:
            assert client.judge(GOOD).verdict.name == "AC"
            assert client.health()["ok"]
        with SandboxClient(srv.url, api_key=api_key, max_retries=0) as client:  # system CAs: not trusted
            with pytest.raises(SandboxUnavailable, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
                client.judge(GOOD)
        plain = srv.url.replace("https://", "http://")
        try:
            resp = httpx.post(f"{plain}/judge", json=GOOD, headers={"Authorization": f"Bearer {api_key}"}, timeout=10)
        except httpx.TransportError:
            pass  # the TLS listener drops plain HTTP
        else:
            assert resp.status_code >= 400  # never judged in clear text
        unauth = httpx.post(f"{srv.url}/judge", json=GOOD, verify=str(cert), timeout=30)
        assert unauth.status_code == 401


def test_mismatched_certificate_stops_the_server_at_start(tmp_path, capsys):
    from er_cli import main

    cert_a, _ = self_signed(tmp_path, "a")
    _, key_b = self_signed(tmp_path, "b")
    assert main(["sandbox", "serve", "--tls-certfile", str(cert_a), "--tls-keyfile", str(key_b)]) == 2
    assert f"{key_b} does not match certificate {cert_a}" in capsys.readouterr().err
    with pytest.raises(ValueError, match=f"{key_b} does not match certificate {cert_a}"):
        LocalServer(judge_workers=1, math_workers=1, tls_certfile=str(cert_a), tls_keyfile=str(key_b)).start()


# ---------------------------------------------------------------------------- quotas
def _judge_once(url: str, key: str) -> tuple[int, float, httpx.Response]:
    start = time.perf_counter()
    resp = httpx.post(f"{url}/judge", json=GOOD, headers={"Authorization": f"Bearer {key}"}, timeout=120)
    return resp.status_code, time.perf_counter() - start, resp


def test_a_flooding_client_gets_429_while_another_keeps_its_latency(tmp_path):
    flood_key, victim_key = new_key(), new_key()
    keys = write_keys(tmp_path / "keys", [f"flood:{flood_key}", f"victim:{victim_key}"])
    with LocalServer(judge_workers=4, math_workers=1, api_key_file=str(keys), quota_requests=2, quota_submissions=2,
                     isolation_options={"base_uid": 64200, "workers": 4}) as srv:
        for _ in range(2):  # warm the workers
            _judge_once(srv.url, victim_key)
        baseline = [_judge_once(srv.url, victim_key)[1] for _ in range(8)]
        stop, answers, lock = threading.Event(), [], threading.Lock()

        def flood() -> None:
            with httpx.Client(base_url=srv.url, timeout=120,
                              headers={"Authorization": f"Bearer {flood_key}"}) as http:
                while not stop.is_set():
                    resp = http.post("/judge", json={"submissions": [SLOW, SLOW]})
                    with lock:
                        answers.append((resp.status_code, resp.headers.get("retry-after")))
                    if resp.status_code == 429:
                        time.sleep(0.02)  # a runaway client: ignores most of Retry-After

        threads = [threading.Thread(target=flood, daemon=True) for _ in range(6)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        try:
            under = [_judge_once(srv.url, victim_key) for _ in range(8)]
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        assert all(code == 200 for code, _, _ in under), [r.text for _, _, r in under]
        rejected = [ra for code, ra in answers if code == 429]
        assert rejected and all(ra is not None and float(ra) >= 1 for ra in rejected), answers[:20]
        assert any(code == 200 for code, _ in answers), "the flooding client got none of its share"
        normal, loaded = statistics.median(baseline), statistics.median(t for _, t, _ in under)
        assert loaded <= 3 * normal + 0.25, (baseline, [t for _, t, _ in under])
        metrics = httpx.get(f"{srv.url}/metrics", headers={"Authorization": f"Bearer {victim_key}"}, timeout=30).text
        counted = [line for line in metrics.splitlines()
                   if line.startswith('er_sandbox_quota_rejections_total{key_id="flood"')]
        assert counted and sum(float(line.rsplit(" ", 1)[1]) for line in counted) >= len(rejected) > 0
        assert 'er_sandbox_quota_rejections_total{key_id="victim"' not in metrics
        assert flood_key not in metrics and victim_key not in metrics


def test_client_retries_429_then_reports_the_quota(tmp_path):
    key = new_key()
    keys = write_keys(tmp_path / "keys", [f"one:{key}"])
    with LocalServer(judge_workers=2, math_workers=1, api_key_file=str(keys), quota_submissions=1,
                     isolation_options={"base_uid": 64300, "workers": 2}) as srv:
        with SandboxClient(srv.url, api_key=key, batch_size=4, max_concurrency=4, backoff_s=0.05,
                           max_retries=8) as client:
            # a batch over the quota is split (413) and the halves wait their turn (429, Retry-After)
            results = client.judge_batch([GOOD] * 4)
        assert [r.verdict.name for r in results] == ["AC"] * 4
