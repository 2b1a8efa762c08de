r"""``er serve``: the OpenAI-compatible completion server over transformers (CPU dev server).

Example::

    er serve --model /tmp/tiny-r1 --port 8000
    curl -s localhost:8000/v1/completions -H 'Content-Type: application/json' \
        -d '{"prompt": [1, 2, 3], "max_tokens": 8, "temperature": 0, "return_token_ids": true}'

Every flag has a mirroring environment variable ``ER_SERVE_<FLAG>`` (e.g.
``ER_SERVE_PORT=9000``); a flag on the command line wins. The server binds to
127.0.0.1 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from er_cli import add_dataclass_args, dataclass_from_args

__all__ = ["ServeConfig", "register"]

ENV_PREFIX = "ER_SERVE_"


@dataclass
class ServeConfig:
    """Settings of ``er serve``.

    > Parameters that control the model

    Attributes:
        model: local model directory (or hub name) to serve.
        served_model_name: the id clients send as ``model`` (default: ``model``).
        device: torch device.
        dtype: weight dtype.

    > Parameters that control the HTTP server

    Attributes:
        host: interface to bind (localhost by default).
        port: TCP port.
        log_level: uvicorn log level.

    """

    model: str = field(default="", metadata={
        "help": "Model directory or hub name to serve (required; or ER_SERVE_MODEL)."})
    served_model_name: str = field(default="", metadata={"help": "Model id clients send (default: --model)."})
    device: str = field(default="cpu", metadata={"help": "Torch device, e.g. cpu or cuda."})
    dtype: str = field(default="float32", metadata={"help": "Weight dtype: float32, bfloat16 or float16."})
    host: str = field(default="127.0.0.1", metadata={"help": "Interface to bind; 0.0.0.0 exposes the server."})
    port: int = field(default=8000, metadata={"help": "TCP port."})
    log_level: str = field(default="info", metadata={"help": "uvicorn log level (debug, info, warning, error)."})

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("er serve needs --model PATH (or ER_SERVE_MODEL), e.g. a directory from `er tiny-model`.")
        if not 0 < self.port < 65536:
            raise ValueError(f"--port must be in 1..65535, got {self.port}.")


def _env_defaults() -> dict[str, Any]:
    """``ER_SERVE_*`` values, converted to each field's type."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(ServeConfig):
        raw = os.environ.get(ENV_PREFIX + f.name.upper())
        if raw is not None:
            out[f.name] = int(raw) if f.type in (int, "int") else raw
    return out


def _run(ns: argparse.Namespace) -> int:
    import uvicorn

    from er_serving.server.openai_server import create_app, load_generator

    cfg = dataclass_from_args(ServeConfig, ns)
    generator = load_generator(cfg.model, device=cfg.device, dtype=cfg.dtype)
    app = create_app(generator, model_name=cfg.served_model_name or cfg.model)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level)
    return 0


def register(subparsers: Any) -> None:
    """Add ``er serve`` to the ``er`` command line."""
    parser = subparsers.add_parser(
        "serve",
        help="Serve a model over an OpenAI-compatible /v1/completions API (transformers, CPU dev server).",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_dataclass_args(parser, ServeConfig)
    parser.set_defaults(func=_run, **_env_defaults())
