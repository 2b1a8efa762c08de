"""`er proxy` settings: flags, YAML config file, env vars, refusals (no server started)."""

from __future__ import annotations

import pytest

from er_cli import build_parser
from er_cli.proxy_cmd import _run, _settings
from er_serving.proxy.config import ProxyConfig, parse_effort_table

BASE = ["proxy", "--upstream", "http://a:1/v1,http://b:2/", "--model", "m", "--tokenizer", "tiny"]


def _ns(*extra):
    return build_parser().parse_args([*BASE, *extra])


def test_flags_config_file_and_env(tmp_path, monkeypatch):
    cfg = _settings(_ns("--thinking-token-budget", "64"))
    assert cfg.upstreams == ["http://a:1", "http://b:2"] and cfg.thinking_token_budget == 64
    path = tmp_path / "proxy.yaml"
    path.write_text("thinking_token_budget: 32\nsolution_token_budget: 16\nport: 9100\n"
                    "effort_budgets: {low: 100, high: 900}\n")
    monkeypatch.setenv("ER_PROXY_PORT", "9200")
    cfg = _settings(_ns("--config", str(path), "--solution-token-budget", "8"))
    assert (cfg.thinking_token_budget, cfg.solution_token_budget, cfg.port) == (32, 8, 9200)
    assert cfg.effort_table == {"low": 100, "high": 900}
    path.write_text("thinking_budget: 32\n")
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['thinking_budget'\]"):
        _settings(_ns("--config", str(path)))


@pytest.mark.parametrize("kw,needle", [
    ({"upstream": ""}, "--upstream"),
    ({"thinking_token_budget": 0}, "thinking_token_budget must be a positive integer"),
    ({"solution_token_budget": 5}, "needs a default thinking_token_budget"),
    ({"effort_budgets": "huge:5"}, "efforts are none, minimal"),
    ({"effort_budgets": "low:-1"}, "low:1024"),
])
def test_bad_settings_name_the_fix(kw, needle):
    with pytest.raises(ValueError, match=needle):
        ProxyConfig(**{"upstream": "http://a", "model": "m", "tokenizer": "tiny", **kw})


def test_non_loopback_bind_without_keys_is_refused():
    with pytest.raises(ValueError, match="--insecure-no-auth"):
        _run(_ns("--host", "0.0.0.0"))


def test_effort_table_parses_defaults():
    assert parse_effort_table("none:1, low:1024")["low"] == 1024


def test_api_key_file_is_checked_before_the_proxy_starts(tmp_path):
    from sandbox.service.auth import KeyFileError

    loose = tmp_path / "keys"
    loose.write_text("k" * 32 + "\n")
    loose.chmod(0o644)
    with pytest.raises(KeyFileError, match=f"{loose}.*chmod 600"):
        _run(_ns("--api-key-file", str(loose)))
    with pytest.raises(KeyFileError, match="does not exist"):
        _run(_ns("--host", "0.0.0.0", "--api-key-file", str(tmp_path / "missing")))
    assert _ns("--insecure-no-auth").insecure_no_auth is True
