"""Caller authentication of the reward service (issue 16): key files, the bind rule, constant-time comparison,
and real servers on loopback: no key / wrong key / revoked key / right key on every route, rotation with two
keys live, the client's key from the environment, and a clear error at start for every bad setting."""

from __future__ import annotations

import os
import random
import statistics
import time

import httpx
import pytest
from auth_helpers import new_key, write_keys

from sandbox.service.auth import KeyFileError, KeyRing, check_bind, client_api_key, key_id_of
from sandbox.service.client import SandboxClient, SandboxRequestError
from sandbox.service.config import ServerConfig
from sandbox.service.local_server import LocalServer

DOUBLE = {"kind": "stdio", "cases": [{"input": "2", "output": "4"}, {"input": "21", "output": "42"}]}
GOOD = {"code": "print(2 * int(input()))", "tests": DOUBLE}


# ---------------------------------------------------------------------------- key files
def test_key_ring_loads_named_and_unnamed_keys_and_keeps_only_digests(tmp_path):
    alice, bare = new_key(), new_key()
    path = write_keys(tmp_path / "keys", ["# trainer keys", "", f"alice:{alice}", bare])
    ring = KeyRing(path)
    assert ring.key_ids == sorted(["alice", key_id_of(bare)])
    assert ring.identify(alice) == "alice" and ring.identify(bare) == key_id_of(bare)
    assert ring.identify(alice[:-1]) is None and ring.identify("") is None and ring.identify(None) is None
    assert ring.authenticate(f"Bearer {alice}") == "alice" and ring.authenticate(f"Basic {alice}") is None
    held = repr(vars(ring)) + repr(ring)
    assert alice not in held and bare not in held


@pytest.mark.parametrize("lines, mode, words", [
    (None, 0o600, ["does not exist", "chmod 600"]),
    ([], 0o600, ["holds no key", "one key per line"]),
    (["# only a comment"], 0o600, ["holds no key"]),
    ([f"a:{'k' * 40}"], 0o644, ["others can read it", "chmod 600"]),
    ([f"a:{'k' * 40}"], 0o640, ["others can read it", "chmod 600"]),
    (["a:short"], 0o600, ["line 1", "at least 16", "secrets.token_urlsafe"]),
    (["a key with spaces in it"], 0o600, ["line 1", "one word"]),
    ([f"bad id!:{'k' * 40}"], 0o600, ["line 1", "key id"]),
    ([f"a:{'k' * 40}", f"a:{'j' * 40}"], 0o600, ["line 2", "appears twice"]),
])
def test_bad_key_files_are_refused_naming_the_file_and_the_fix(tmp_path, lines, mode, words):
    path = tmp_path / "keys"
    if lines is not None:
        write_keys(path, lines, mode)
    with pytest.raises(KeyFileError) as info:
        KeyRing(path)
    message = str(info.value)
    assert str(path) in message and all(w in message for w in words), message
    assert "k" * 40 not in message and "j" * 40 not in message  # never the key


def test_bind_rule_and_config_errors(tmp_path):
    check_bind("127.0.0.1", None, False)
    check_bind("::1", None, False)
    with pytest.raises(ValueError, match="--api-key-file.*--insecure-no-auth"):
        check_bind("0.0.0.0", None, False)
    check_bind("0.0.0.0", None, True)  # accepted, with a warning
    check_bind("0.0.0.0", KeyRing(write_keys(tmp_path / "k", [new_key()])), False)
    for name in ("quota_requests", "quota_submissions"):
        with pytest.raises(ValueError, match=f"{name}=0 would refuse every request.*ER_SANDBOX_{name.upper()}"):
            ServerConfig(**{name: 0})
    with pytest.raises(ValueError, match="both tls_certfile and tls_keyfile"):
        ServerConfig(tls_certfile="/x.pem")


def test_serve_refuses_to_start_with_a_bad_setting(tmp_path, capsys):
    from er_cli import main

    assert main(["sandbox", "serve", "--host", "0.0.0.0"]) == 2
    assert "--api-key-file" in capsys.readouterr().err
    loose = write_keys(tmp_path / "loose", [new_key()], mode=0o644)
    assert main(["sandbox", "serve", "--api-key-file", str(loose)]) == 2
    err = capsys.readouterr().err
    assert str(loose) in err and "chmod 600" in err
    assert main(["sandbox", "serve", "--quota-requests", "0"]) in (1, 2)
    assert "quota_requests=0" in capsys.readouterr().err
    from er_cli import build_parser  # `--insecure-no-auth` alone is the explicit opt-out

    assert build_parser().parse_args(["sandbox", "serve", "--insecure-no-auth", "--host", "0.0.0.0"]).insecure_no_auth


def test_client_key_from_argument_environment_or_file(tmp_path, monkeypatch):
    key = new_key()
    monkeypatch.delenv("ER_API_KEY", raising=False)
    monkeypatch.delenv("ER_API_KEY_FILE", raising=False)
    assert client_api_key() is None
    path = write_keys(tmp_path / "client", [f"trainer:{key}"])
    monkeypatch.setenv("ER_API_KEY_FILE", str(path))
    assert client_api_key() == key
    monkeypatch.setenv("ER_API_KEY", "from-env-0123456789")
    assert client_api_key() == "from-env-0123456789" and client_api_key("explicit") == "explicit"
    os.chmod(path, 0o644)
    monkeypatch.delenv("ER_API_KEY")
    with pytest.raises(KeyFileError, match="chmod 600"):
        client_api_key()
    client = SandboxClient("http://127.0.0.1:9", api_key=key)
    assert key not in repr(client) and key not in str(vars(client).get("base_url"))


def test_comparison_time_does_not_depend_on_the_matched_prefix(tmp_path):
    """Statistical: interleaved rounds; a wrong key sharing 63 of 64 characters with a stored key takes as
    long (median of round means) as one sharing none and as the right key, within the noise of the rounds."""
    stored = "k" * 64
    ring = KeyRing(write_keys(tmp_path / "keys", [f"id{i}:{new_key()}" for i in range(7)] + [f"target:{stored}"]))
    probes = {"right": stored, "prefix": "k" * 63 + "x", "none": "x" * 64}
    rounds: dict[str, list[float]] = {name: [] for name in probes}
    rng = random.Random(0)
    for _ in range(60):
        order = list(probes)
        rng.shuffle(order)
        for name in order:
            key = probes[name]
            start = time.perf_counter_ns()
            for _ in range(300):
                ring.identify(key)
            rounds[name].append((time.perf_counter_ns() - start) / 300)
    medians = {name: statistics.median(v) for name, v in rounds.items()}
    spread = statistics.median(abs(x - medians["none"]) for x in rounds["none"])  # noise of one round (MAD)
    tolerance = max(4 * spread, 0.15 * medians["none"])
    for name in ("right", "prefix"):
        assert abs(medians[name] - medians["none"]) <= tolerance, (medians, spread)


# ---------------------------------------------------------------------------- a real server on loopback
@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    directory = tmp_path_factory.mktemp("keys")
    keys = {"alice": new_key(), "old": new_key()}
    path = write_keys(directory / "keys", [f"{k}:{v}" for k, v in keys.items()])
    with LocalServer(judge_workers=2, math_workers=1, api_key_file=str(path), key_reload_s=0.2,
                     isolation_options={"base_uid": 64000, "workers": 2}) as srv:
        yield srv, path, keys


ROUTES = [("POST", "/judge", GOOD), ("POST", "/run", {"source": "print(1)", "stdin": ""}),
          ("POST", "/math/check", {"gold": "1/2", "pred": "0.5"}), ("GET", "/metrics", None),
          ("GET", "/openapi.json", None), ("GET", "/docs", None), ("GET", "/no-such-route", None)]


@pytest.mark.parametrize("method, path, body", ROUTES)
def test_every_route_needs_the_key(keyed, method, path, body):
    srv, _, keys = keyed
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        for headers, error in (({}, None), ({"Authorization": "Bearer " + "x" * 43}, "invalid_token"),
                               ({"Authorization": f"Basic {keys['alice']}"}, None)):
            resp = http.request(method, path, json=body, headers=headers)
            assert resp.status_code == 401, (path, headers, resp.text)
            challenge = resp.headers["www-authenticate"]
            assert challenge.startswith('Bearer realm="er-sandbox"') and (error is None or error in challenge)
            assert set(resp.json()) == {"error", "detail"} and resp.json()["error"] == "unauthorized"
        ok = http.request(method, path, json=body, headers={"Authorization": f"Bearer {keys['alice']}"})
        assert ok.status_code == (404 if path == "/no-such-route" else 200), ok.text


def test_health_stays_open_and_metrics_show_key_ids_never_keys(keyed):
    srv, _, keys = keyed
    health = httpx.get(f"{srv.url}/health", timeout=60)
    assert health.status_code == 200 and health.json()["ok"]
    text = httpx.get(f"{srv.url}/metrics", headers={"Authorization": f"Bearer {keys['alice']}"}, timeout=60).text
    assert 'er_sandbox_auth_total{key_id="alice",outcome="accepted"}' in text
    assert 'er_sandbox_key_requests_in_flight{key_id="alice"}' in text
    assert not any(k in text for k in keys.values())


def test_client_sends_the_key_from_the_environment(keyed, monkeypatch):
    srv, _, keys = keyed
    monkeypatch.setenv("ER_API_KEY", keys["alice"])
    with SandboxClient(srv.url, max_retries=0) as client:
        assert client.judge(GOOD).verdict.name == "AC"
        assert client.check_math("1/2", pred="0.5").correct
    monkeypatch.setenv("ER_API_KEY", "y" * 43)
    with SandboxClient(srv.url, max_retries=0) as client, pytest.raises(SandboxRequestError) as info:
        client.judge(GOOD)
    assert info.value.status == 401 and "y" * 43 not in str(info.value)
    monkeypatch.delenv("ER_API_KEY")
    with SandboxClient(srv.url, max_retries=0) as client, pytest.raises(SandboxRequestError, match="ER_API_KEY"):
        client.judge(GOOD)


def _accepted(url: str, key: str) -> bool:
    resp = httpx.post(f"{url}/math/check", json={"gold": "1", "pred": "1"}, headers={"Authorization": f"Bearer {key}"},
                      timeout=60)
    assert resp.status_code in (200, 401), resp.text
    return resp.status_code == 200


def _until(predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_rotation_two_keys_live_then_the_old_one_revoked(keyed):
    srv, path, keys = keyed
    new = new_key()
    assert not _accepted(srv.url, new) and _accepted(srv.url, keys["old"])
    write_keys(path, [f"alice:{keys['alice']}", f"old:{keys['old']}", f"new:{new}"])  # 1. add the new key
    assert _until(lambda: _accepted(srv.url, new)), "the added key was never accepted"
    for _ in range(5):  # 2. both live while the clients move over
        assert _accepted(srv.url, keys["old"]) and _accepted(srv.url, new)
    write_keys(path, [f"alice:{keys['alice']}", f"new:{new}"])  # 3. revoke the old key
    assert _until(lambda: not _accepted(srv.url, keys["old"])), "the revoked key was still accepted"
    resp = httpx.post(f"{srv.url}/judge", json=GOOD, headers={"Authorization": f"Bearer {keys['old']}"}, timeout=60)
    assert resp.status_code == 401 and 'error="invalid_token"' in resp.headers["www-authenticate"]
    assert _accepted(srv.url, new) and _accepted(srv.url, keys["alice"])
    write_keys(path, ["not a key file"])  # 4. a broken file keeps the keys in use (logged), never locks all out
    time.sleep(0.6)
    assert _accepted(srv.url, new)
    write_keys(path, [f"alice:{keys['alice']}", f"new:{new}"])


def test_a_server_with_a_bad_key_file_does_not_start(tmp_path):
    empty = write_keys(tmp_path / "empty", [])
    with pytest.raises(RuntimeError, match=f"{empty}.*holds no key"):
        LocalServer(api_key_file=str(empty), judge_workers=1, math_workers=1, startup_timeout_s=60).start()
