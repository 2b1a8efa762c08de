"""Settings of ``er proxy`` (one dataclass; the CLI flags and the YAML config file are built from it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["EFFORTS", "ProxyConfig", "load_config", "parse_effort_table"]

#: the OpenAI ``reasoning_effort`` values (``openai.types.shared.ReasoningEffort``)
EFFORTS = ("none", "minimal", "low", "medium", "high")

#: default effort -> thinking budget table. ``none`` is one token: the protocol needs t >= 1,
#: so the model gets one thinking token before the forced ``</think>``.
DEFAULT_EFFORT_TABLE = "none:1,minimal:256,low:1024,medium:4096,high:16384"


def parse_effort_table(spec: str | dict[str, Any]) -> dict[str, int]:
    """Parse ``"low:1024,medium:4096"`` (or a mapping) into ``{effort: thinking budget}``.

    Raises:
        ValueError: an unknown effort name or a budget that is not a positive integer.

    """
    items = spec.items() if isinstance(spec, dict) else (
        part.split(":", 1) if ":" in part else (part, "") for part in spec.split(",") if part.strip()
    )
    table: dict[str, int] = {}
    for name, raw in items:
        name = str(name).strip()
        if name not in EFFORTS:
            raise ValueError(f"effort_budgets names {name!r}; the efforts are {', '.join(EFFORTS)}.")
        try:
            value = int(str(raw).strip())
        except ValueError:
            value = 0
        if value <= 0 or isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError(f"effort_budgets[{name!r}] must be a positive number of tokens, got {raw!r} "
                             f"(write it as {name}:1024).")
        table[name] = value
    return table


@dataclass
class ProxyConfig:
    """Settings of ``er proxy``.

    > Parameters that control the upstreams

    Attributes:
        upstream: comma-separated base URLs of OpenAI-compatible servers that take
            token-id prompts on ``/v1/completions`` (vLLM, SGLang, ``er serve``).
        model: the model id clients send and ``/v1/models`` lists.
        upstream_model: the id sent upstream (default: ``model``).
        tokenizer: the model's tokenizer (local dir or hub name); the proxy applies
            the chat template and resolves ``</think>``/EOS with it.
        context_length: the model context (default: ``max_model_len`` from the
            upstreams' ``/v1/models``).
        timeout_s: per-upstream-request timeout.
        max_connections: size of the one connection pool shared by all upstreams.
        health_interval_s: seconds between health checks of each upstream.

    > Parameters that control budgets

    Attributes:
        thinking_token_budget: default thinking budget t when a request sets none
            (``None``: no default, such requests run unconstrained).
        solution_token_budget: default solution budget s (applies with a thinking budget).
        effort_budgets: ``reasoning_effort`` -> thinking budget table.

    > Parameters that control the HTTP server

    Attributes:
        host: interface to bind (localhost by default).
        port: TCP port.
        api_key_file: file(s) of caller keys (comma-separated); requires the shared
            auth mechanism (``sandbox.service.auth``).
        insecure_no_auth: allow a non-loopback bind without caller keys.
        log_level: uvicorn log level.

    """

    upstream: str = field(default="", metadata={
        "help": "Upstream base URL(s), comma-separated (required; or in --config)."})
    model: str = field(default="", metadata={
        "help": "Model id clients send and /v1/models lists (required; or in --config)."})
    upstream_model: str = field(default="", metadata={"help": "Model id sent upstream (default: --model)."})
    tokenizer: str = field(default="", metadata={
        "help": "Tokenizer dir or hub name of the model (required; or in --config)."})
    context_length: int | None = field(default=None, metadata={"help": "Model context (default: from upstream)."})
    timeout_s: float = field(default=600.0, metadata={"help": "Timeout of one upstream request, seconds."})
    max_connections: int = field(default=256, metadata={"help": "Connections in the shared upstream pool."})
    health_interval_s: float = field(default=5.0, metadata={"help": "Seconds between upstream health checks."})
    thinking_token_budget: int | None = field(
        default=None, metadata={"help": "Default thinking budget t for requests that set none (none: unconstrained)."}
    )
    solution_token_budget: int | None = field(
        default=None, metadata={"help": "Default solution budget s (with a thinking budget)."}
    )
    effort_budgets: str = field(
        default=DEFAULT_EFFORT_TABLE,
        metadata={"help": "reasoning_effort -> thinking budget, e.g. 'low:512,high:8192'."},
    )
    host: str = field(default="127.0.0.1", metadata={"help": "Interface to bind; 0.0.0.0 exposes the proxy."})
    port: int = field(default=8100, metadata={"help": "TCP port."})
    api_key_file: str = field(default="", metadata={"help": "Caller key file(s), comma-separated (bearer auth)."})
    insecure_no_auth: bool = field(
        default=False, metadata={"help": "Allow a non-loopback bind without --api-key-file."}
    )
    log_level: str = field(default="warning", metadata={"help": "uvicorn log level (debug, info, warning, error)."})

    def __post_init__(self) -> None:
        if isinstance(self.effort_budgets, dict):  # a YAML mapping
            self.effort_budgets = ",".join(f"{k}:{v}" for k, v in self.effort_budgets.items())
        for name, hint in (("upstream", "--upstream http://127.0.0.1:8000"), ("model", "--model NAME"),
                           ("tokenizer", "--tokenizer PATH_OR_HUB_NAME")):
            if not getattr(self, name):
                raise ValueError(f"er proxy needs {hint} (or `{name}:` in --config).")
        for name in ("thinking_token_budget", "solution_token_budget", "context_length", "max_connections"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if self.solution_token_budget is not None and self.thinking_token_budget is None:
            raise ValueError(f"solution_token_budget={self.solution_token_budget} needs a default "
                             "thinking_token_budget too: a solution budget caps the phase after a thinking budget.")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port}.")
        if self.timeout_s <= 0 or self.health_interval_s <= 0:
            raise ValueError(f"timeout_s and health_interval_s must be > 0, got {self.timeout_s} and "
                             f"{self.health_interval_s}.")
        self.effort_table  # noqa: B018 - validates the table now

    @property
    def upstreams(self) -> list[str]:
        """The upstream base URLs (a trailing ``/v1`` or ``/`` dropped)."""
        out = []
        for url in self.upstream.split(","):
            url = url.strip().rstrip("/")
            if url:
                out.append(url[: -len("/v1")] if url.endswith("/v1") else url)
        return out

    @property
    def effort_table(self) -> dict[str, int]:
        """``reasoning_effort`` -> thinking budget."""
        return parse_effort_table(self.effort_budgets)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> ProxyConfig:
    """A :class:`ProxyConfig` from a YAML file, ``overrides`` (flags the user set) on top.

    Raises:
        ValueError: the file holds keys that are no setting (the message lists them and the valid ones).
        FileNotFoundError: no such file.

    """
    import yaml

    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of settings, got {type(data).__name__}.")
    names = {f.name for f in dataclasses.fields(ProxyConfig)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{path}: unknown setting(s) {unknown}; valid ones are {sorted(names)}.")
    return ProxyConfig(**{**data, **(overrides or {})})
