r"""``er proxy``: an OpenAI-compatible Elastic Reasoning endpoint over upstream completion servers.

Example::

    er proxy --upstream http://127.0.0.1:8000 --model tiny --tokenizer /tmp/tiny-r1 --port 8100
    curl -s localhost:8100/v1/chat/completions -H 'Content-Type: application/json' -d '{"model": "tiny",
        "messages": [{"role": "user", "content": "What is 2 + 3?"}],
        "thinking_token_budget": 64, "solution_token_budget": 32}'

``--config FILE`` reads the settings from YAML (the flag names with underscores;
unknown keys are refused); flags given on the command line win. Every flag also has a
mirroring environment variable ``ER_PROXY_<FLAG>`` (below the config file and the
flags). The proxy binds to 127.0.0.1 unless ``--host`` says otherwise; another address needs
``--api-key-file FILE`` (the reward service's key files, :mod:`sandbox.service.auth`: one
bearer key per line, ``id:key``, ``chmod 600``, re-read when changed) or ``--insecure-no-auth``.
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
    from er_serving.proxy.config import ProxyConfig, load_config

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

    from er_serving.proxy.app import create_app
    from sandbox.service.auth import KeyRing, check_bind

    cfg = _settings(ns)
    # the reward service's key files and rules: one key per line (id:key), chmod 600, re-read when changed
    keys = KeyRing(cfg.api_key_file) if cfg.api_key_file else None
    check_bind(cfg.host, keys, cfg.insecure_no_auth, what="er proxy", key_flag="--api-key-file",
               insecure_flag="--insecure-no-auth")
    app = create_app(cfg, authenticate=keys.authenticate if keys is not None else None)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level)
    return 0


def register(subparsers: Any) -> None:
    """Add ``er proxy`` to the ``er`` command line."""
    from er_serving.proxy.config import ProxyConfig

    parser = subparsers.add_parser(
        "proxy",
        help="Serve Elastic Reasoning budgets over an OpenAI-compatible API in front of vLLM/SGLang/er serve.",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_dataclass_args(parser, ProxyConfig)
    for action in parser._actions:
        if action.dest == "insecure_no_auth":  # `--insecure-no-auth` alone means true
            action.nargs, action.const = "?", True
    parser.add_argument("--config", default=None, help="YAML file of settings (flags override it).")
    parser.set_defaults(func=_run, **{f.name: _UNSET for f in dataclasses.fields(ProxyConfig)})
