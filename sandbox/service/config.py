"""Settings of the reward service (stdlib only, so ``er --help`` and the config stay light).

- :class:`WireLimits`: request size limits (re-exported by :mod:`sandbox.service.wire`).
- :class:`ServiceConfig`: what :class:`sandbox.service.service.SandboxService` runs on.
- :class:`ServerConfig`: the service plus the HTTP listener; every field mirrors an
  environment variable ``ER_SANDBOX_<FIELD>`` (:meth:`ServerConfig.from_env`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["WireLimits", "ServiceConfig", "ServerConfig", "ENV_PREFIX", "parse_bool"]

ENV_PREFIX = "ER_SANDBOX_"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_bool(name: str, raw: str) -> bool:
    """Parse a boolean setting as the ``er`` command line does (case-insensitive).

    Args:
        name: the setting (environment variable) name, quoted in the error.
        raw: its text.

    Returns:
        True for 1/true/yes/on, False for 0/false/no/off.

    Raises:
        ValueError: any other text (a typo such as ``ture`` never silently means False).

    """
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"{name}={raw!r} is not a boolean; use one of {_TRUE} or {_FALSE}")


@dataclass
class WireLimits:
    """Request size limits enforced by the server (and by the in-process client).

    > Parameters that bound one request

    Attributes:
        max_body_bytes: largest accepted HTTP body.
        max_batch_size: most submissions in one ``/judge`` request.
        max_math_batch_size: most items in one ``/math/check`` request.
        max_code_chars: longest ``code``/``completion``/``source`` string.
        max_tests: most test cases in one submission's test spec.

    """

    max_body_bytes: int = field(default=64 * 1024 * 1024, metadata={"help": "Largest accepted HTTP body in bytes."})
    max_batch_size: int = field(default=256, metadata={"help": "Most submissions in one /judge request."})
    max_math_batch_size: int = field(default=4096, metadata={"help": "Most items in one /math/check request."})
    max_code_chars: int = field(default=400_000, metadata={"help": "Longest code/completion/source string (chars)."})
    max_tests: int = field(default=2000, metadata={"help": "Most test cases in one submission's test spec."})

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_batch_size", "max_math_batch_size", "max_code_chars", "max_tests"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"WireLimits.{name} must be a positive integer, got {value!r}.")


def options_dict(value: dict[str, Any] | str) -> dict[str, Any]:
    """A JSON-object option after ``__post_init__`` parsed it (always a dict by then)."""
    if not isinstance(value, dict):
        raise TypeError(f"expected a parsed options dict, got {value!r:.100}")
    return value


def _json_object(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    try:
        parsed = json.loads(value or "{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name} must be a JSON object, got {value!r:.100}: {exc}") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"{name} must be a JSON object such as '{{\"workers\": 4}}', got {value!r:.100}")
    return parsed


@dataclass
class ServiceConfig:
    """What the reward service runs on.

    > Parameters that control code judging

    Attributes:
        isolation: isolation backend name (``process``, ``docker``, ``socket``, or ``module:Class``).
        isolation_options: JSON object of keyword arguments for the backend's constructor.
        judge_options: JSON object of :class:`sandbox.core.judge.JudgeConfig` overrides.
        judge_workers: submissions judged at the same time (threads driving the backend); also the
            default worker count of the process and docker backends.
        max_pending: submissions allowed to wait for a judge thread before new requests get 503.

    > Parameters that control math checking

    Attributes:
        math_workers: math checker worker processes.
        math_timeout_s: hard wall-clock limit of one math check.
        math_options: JSON object of other ``MathCheckerConfig`` fields.

    > Parameters that bound one request (see :class:`sandbox.service.wire.WireLimits`)

    """

    isolation: str = field(default="process", metadata={
        "help": "Isolation backend: process | docker | socket | module:Class."})
    isolation_options: dict[str, Any] | str = field(default="{}", metadata={
        "help": "JSON object of backend constructor kwargs, e.g. '{\"workers\": 4}'."})
    judge_options: dict[str, Any] | str = field(default="{}", metadata={
        "help": "JSON object of JudgeConfig overrides, e.g. '{\"cpu_time_limit_s\": 4}'."})
    judge_workers: int = field(default_factory=lambda: max(2, os.cpu_count() or 2), metadata={
        "help": "Submissions judged concurrently (threads driving the isolation backend); also the default "
                "worker count of the process/docker backends."})
    max_pending: int = field(default=4096, metadata={
        "help": "Submissions allowed to wait for a judge thread; beyond it requests get 503."})
    math_workers: int = field(default=2, metadata={"help": "Math checker worker processes."})
    math_timeout_s: float = field(default=2.0, metadata={"help": "Hard wall-clock limit of one math check (s)."})
    math_options: dict[str, Any] | str = field(default="{}", metadata={
        "help": "JSON object of other MathCheckerConfig fields, e.g. '{\"fallback_to_thinking\": true}'."})
    max_body_bytes: int = field(default=WireLimits.max_body_bytes, metadata={
        "help": "Largest accepted HTTP body in bytes."})
    max_batch_size: int = field(default=WireLimits.max_batch_size, metadata={
        "help": "Most submissions in one /judge request."})
    max_math_batch_size: int = field(default=WireLimits.max_math_batch_size, metadata={
        "help": "Most items in one /math/check request."})
    max_code_chars: int = field(default=WireLimits.max_code_chars, metadata={
        "help": "Longest code/completion/source string in characters."})
    max_tests: int = field(default=WireLimits.max_tests, metadata={
        "help": "Most test cases in one submission's spec."})

    def __post_init__(self) -> None:
        self.isolation_options = _json_object("isolation_options", self.isolation_options)
        self.judge_options = _json_object("judge_options", self.judge_options)
        self.math_options = _json_object("math_options", self.math_options)
        for name in ("judge_workers", "max_pending", "math_workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.math_timeout_s > 0:
            raise ValueError(f"math_timeout_s must be > 0 seconds, got {self.math_timeout_s!r}")
        self.wire_limits()  # validates the size limits
        self.judge_config()  # validates judge_options

    def wire_limits(self) -> WireLimits:
        """The request size limits as a :class:`~sandbox.service.wire.WireLimits`."""
        return WireLimits(max_body_bytes=self.max_body_bytes, max_batch_size=self.max_batch_size,
                          max_math_batch_size=self.max_math_batch_size, max_code_chars=self.max_code_chars,
                          max_tests=self.max_tests)

    def judge_config(self) -> Any:
        """The base :class:`sandbox.core.judge.JudgeConfig` (``judge_options`` applied).

        Raises:
            ValueError: an unknown or invalid judge option (the message lists the valid ones).

        """
        from sandbox.core.judge import JudgeConfig

        try:
            return JudgeConfig(**options_dict(self.judge_options))
        except TypeError as exc:
            valid = [f.name for f in dataclasses.fields(JudgeConfig)]
            raise ValueError(f"judge_options={self.judge_options!r} rejected ({exc}); valid keys: {valid}") from None


@dataclass
class ServerConfig(ServiceConfig):
    """Reward server settings: the :class:`~sandbox.service.service.ServiceConfig` plus the listener.

    > Parameters that control the listener

    Attributes:
        host: interface to bind (localhost unless told otherwise).
        port: TCP port.
        log_level: uvicorn log level.

    > Parameters that control who may call (:mod:`sandbox.service.auth`, :mod:`sandbox.service.quota`)

    Attributes:
        api_key_file: file(s) of accepted bearer keys (comma-separated; one key per line, ``id:key``
            or a bare key; ``chmod 600``). Empty: no authentication, allowed on loopback only.
        insecure_no_auth: accept a non-loopback ``host`` without keys.
        metrics_open: serve ``/metrics`` without a key (bind it privately then).
        key_reload_s: how often the key files are checked for changes (0: never; rotation needs a restart).
        quota_requests: requests one key may have in flight (beyond: 429 + ``Retry-After``).
        quota_submissions: submissions one key may have queued or being judged (beyond: 429).

    > Parameters that control transport security

    Attributes:
        tls_certfile: PEM certificate (chain) to serve HTTPS with; empty: plain HTTP.
        tls_keyfile: its PEM private key (not world-readable).

    Every field can be set by the environment variable ``ER_SANDBOX_<FIELD>``
    (see :meth:`from_env`); explicit arguments win over the environment.

    """

    host: str = field(default="127.0.0.1", metadata={
        "help": "Interface to bind; 0.0.0.0 exposes the sandbox to the network."})
    port: int = field(default=8000, metadata={"help": "TCP port."})
    log_level: str = field(default="info", metadata={"help": "uvicorn log level."})
    api_key_file: str = field(default="", metadata={
        "help": "Caller key file(s), comma-separated: one bearer key per line (id:key or key), chmod 600; re-read "
                "when changed. Empty: no authentication (127.0.0.1 only)."})
    insecure_no_auth: bool = field(default=False, metadata={
        "help": "Serve a non-loopback host without caller keys (anyone who reaches it runs code)."})
    metrics_open: bool = field(default=False, metadata={
        "help": "Serve /metrics without a key (then keep the port private); /health is always open."})
    key_reload_s: float = field(default=5.0, metadata={
        "help": "Seconds between checks of the key files for changes (rotation without restart); 0: never."})
    quota_requests: int = field(default=256, metadata={
        "help": "Requests one key may have in flight; beyond it 429 + Retry-After."})
    quota_submissions: int = field(default=4096, metadata={
        "help": "Submissions one key may have queued or being judged; beyond it 429 + Retry-After."})
    tls_certfile: str = field(default="", metadata={
        "help": "PEM certificate (chain) file: serve HTTPS. Empty: plain HTTP (use a TLS proxy in front)."})
    tls_keyfile: str = field(default="", metadata={"help": "PEM private key of tls_certfile (not world-readable)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.port < 65536:
            raise ValueError(f"port must be in 0..65535, got {self.port!r}")
        for name in ("quota_requests", "quota_submissions"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} would refuse every request; set it to at least 1 "
                                 f"({self.env_name(name)} or --{name.replace('_', '-')})")
        if self.key_reload_s < 0:
            raise ValueError(f"key_reload_s={self.key_reload_s!r} must be >= 0 seconds (0: never reload)")
        if bool(self.tls_certfile) != bool(self.tls_keyfile):
            raise ValueError(f"TLS needs both tls_certfile and tls_keyfile (got tls_certfile={self.tls_certfile!r}, "
                             f"tls_keyfile={self.tls_keyfile!r}); give both, or neither for plain HTTP")

    @property
    def tls(self) -> bool:
        """Whether the server speaks HTTPS itself."""
        return bool(self.tls_certfile)

    @staticmethod
    def env_name(field_name: str) -> str:
        """The environment variable mirroring ``field_name`` (``port`` -> ``ER_SANDBOX_PORT``)."""
        return ENV_PREFIX + field_name.upper()

    @classmethod
    def env_values(cls, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Field values set in the environment, converted to the field types.

        Args:
            environ: the environment (default ``os.environ``).

        Returns:
            ``{field_name: value}`` for every ``ER_SANDBOX_*`` variable that names a field.

        Raises:
            ValueError: a variable's value does not convert, quoting it.

        """
        environ = os.environ if environ is None else environ
        hints = typing.get_type_hints(cls)
        out: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(cls.env_name(f.name))
            if raw is None:
                continue
            kind = hints[f.name]
            if kind is bool:  # before int: bool is an int subclass, and int("yes") must not be the error
                out[f.name] = parse_bool(cls.env_name(f.name), raw)
                continue
            try:
                if kind is int:
                    out[f.name] = int(raw)
                elif kind is float:
                    out[f.name] = float(raw)
                else:
                    out[f.name] = raw
            except ValueError:
                raise ValueError(f"{cls.env_name(f.name)}={raw!r} is not a valid {kind.__name__}") from None
        return out

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "ServerConfig":
        """Build a config from ``ER_SANDBOX_*`` variables, then ``overrides``.

        Args:
            environ: the environment (default ``os.environ``).
            **overrides: field values that win over the environment.

        Returns:
            The config.

        """
        return cls(**{**cls.env_values(environ), **overrides})
