r"""``er proxy``: an OpenAI-compatible Elastic Reasoning endpoint over upstream completion servers.

Example::

    er proxy --upstream http://127.0.0.1:8000 --model tiny --tokenizer /tmp/tiny-r1 --port 8100
    curl -s localhost:8100/v1/chat/completions -H 'Content-Type: application/json' -d '{"model": "tiny",
        "messages": [{"role": "user", "content": "What is 2 + 3?"}],
        "thinking_token_budget": 64, "solution_token_budget": 32}'

``--config FILE`` reads the settings from YAML (the flag names with underscores;
unknown keys are refused); flags given on the command line win. Every flag also has a
mirroring environment variable ``ER_PROXY_<FLAG>`` (below the config file and the
flags). The proxy binds to 127.0.0.1 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from typing import Any

from er_cli import add_dataclass_args

__all__ = ["register"]

ENV_PREFIX = "ER_PROXY_"
_UNSET = object()


def _settings(ns: argparse.Namespace) -> Any:
    """The :class:`ProxyConfig` from env vars, then ``--config``, then the flags the user gave."""
    from er_tools.proxy.config import ProxyConfig, load_config

    hints = typing.get_type_hints(ProxyConfig)
    given = {f.name: getattr(ns, f.name) for f in dataclasses.fields(ProxyConfig) if getattr(ns, f.name) is not _UNSET}
    env: dict[str, Any] = {}
    for f in dataclasses.fields(ProxyConfig):
        raw = os.environ.get(ENV_PREFIX + f.name.upper())
        if raw is not None:
            base = next((a for a in typing.get_args(hints[f.name]) if a is not type(None)), hints[f.name])
            env[f.name] = raw.lower() in ("1", "true", "yes") if base is bool else base(raw)
    if ns.config:
        return load_config(ns.config, {**env, **given})
    return ProxyConfig(**{**env, **given})


def _run(ns: argparse.Namespace) -> int:
    import uvicorn

    from er_tools.proxy.app import create_app

    cfg = _settings(ns)
    if cfg.api_key_file:
        raise ValueError("--api-key-file needs the shared key mechanism (sandbox.service.auth), which this build "
                         "does not have yet; run without it on 127.0.0.1.")
    if cfg.host not in ("127.0.0.1", "localhost", "::1") and not cfg.insecure_no_auth:
        raise ValueError(f"--host {cfg.host} exposes the proxy without caller keys: pass --api-key-file FILE, or "
                         "--insecure-no-auth true to accept that.")
    uvicorn.run(create_app(cfg), host=cfg.host, port=cfg.port, log_level=cfg.log_level)
    return 0


def register(subparsers: Any) -> None:
    """Add ``er proxy`` to the ``er`` command line."""
    from er_tools.proxy.config import ProxyConfig

    parser = subparsers.add_parser(
        "proxy",
        help="Serve Elastic Reasoning budgets over an OpenAI-compatible API in front of vLLM/SGLang/er serve.",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_dataclass_args(parser, ProxyConfig)
    parser.add_argument("--config", default=None, help="YAML file of settings (flags override it).")
    parser.set_defaults(func=_run, **{f.name: _UNSET for f in dataclasses.fields(ProxyConfig)})
