"""ClusterConfig validation and the Grafana dashboard's series (no Ray needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sandbox.cluster.config import ClusterConfig

DASHBOARD = Path(__file__).resolve().parents[2] / "sandbox" / "cluster" / "grafana-dashboard.json"


@pytest.mark.parametrize("bad, match", [
    ({"proxy_location": "Everywhere"}, "proxy_location='Everywhere'"),
    ({"max_queued_requests": 0}, "max_queued_requests=0"),
    ({"num_replicas": -1}, "num_replicas=-1"),
    ({"http_port": 70000}, "http_port=70000"),
    ({"metrics_port": -5}, "metrics_port=-5"),
    ({"service": "[1, 2]"}, "JSON object"),
    ({"service": "{not json"}, "JSON object"),
    ({"service": {"judge_wrokers": 2}}, "judge_wrokers"),
])
def test_bad_cluster_settings_are_refused_quoting_the_value(bad, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        ClusterConfig(**bad)


def test_service_json_and_url():
    cfg = ClusterConfig(service='{"judge_workers": 3}', http_host="0.0.0.0", http_port=8123, insecure_no_auth=True)
    assert cfg.service == {"judge_workers": 3} and cfg.url == "http://127.0.0.1:8123"
    with pytest.raises(ValueError, match="without authentication.*api_key_file.*--insecure-no-auth"):
        ClusterConfig(service='{"judge_workers": 3}', http_host="0.0.0.0")  # issue 16: keys beyond loopback
    ClusterConfig(service='{"api_key_file": "/etc/er/api_keys"}', http_host="10.0.0.5")


def test_cli_flags_mirror_the_config_fields(monkeypatch):
    from sandbox.cluster.__main__ import _parser

    monkeypatch.setenv("ER_CLUSTER_HTTP_PORT", "9001")
    args = _parser().parse_args(["deploy", "--service", '{"judge_workers": 4}', "--max-queued-requests", "7"])
    assert (args.http_port, args.max_queued_requests, args.service) == (9001, 7, '{"judge_workers": 4}')


def test_dashboard_uses_only_series_the_service_exports():
    from sandbox.service.server import ServerConfig, create_app
    from sandbox.service.service import SandboxService

    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    wanted = {re.sub(r"_(bucket|total)$", "", name) for e in exprs for name in re.findall(r"er_sandbox_\w+", e)}
    assert len(wanted) >= 6, wanted
    config = ServerConfig(judge_workers=1, math_workers=1, isolation_options={"workers": 1})
    service = SandboxService(config)
    try:
        with TestClient(create_app(config, service=service)) as client:
            client.post("/judge", json={"code": "print(1)", "tests": {"kind": "stdio", "cases": [
                {"input": "", "output": "1"}]}})
            text = client.get("/metrics").text
    finally:
        service.close()
    exported = {re.sub(r"_(bucket|total|count|sum|created)$", "", line.split("{")[0].split(" ")[0])
                for line in text.splitlines() if line.startswith("er_sandbox_")}
    assert wanted <= exported, wanted - exported
