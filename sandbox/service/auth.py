"""Caller authentication of the reward service: bearer API keys (stdlib only, besides the ASGI glue).

- :class:`KeyRing`: the accepted keys, loaded from one or more key files. A key file holds one key per
  line, optionally named ``id:key`` (the id is what logs and ``/metrics`` show; without one it is
  ``sha256(key)[:8]``); ``#`` comments and blank lines are ignored. The file must be readable by its
  owner only (``chmod 600``). Only SHA-256 digests are kept in memory, and a presented key is compared
  with every digest with :func:`hmac.compare_digest`, without an early exit, so the time taken does
  not depend on which key (or how much of one) matched. The files are re-read when their mtime
  changes (:meth:`KeyRing.maybe_reload`), so keys rotate without a restart: add the new key, move
  the clients over, remove the old key.
- :class:`BearerAuthMiddleware`: pure ASGI; every route needs ``Authorization: Bearer <key>`` except
  ``/health`` (liveness carries no data) and, with ``metrics_open``, ``/metrics``. A missing or wrong
  key gets 401 with ``WWW-Authenticate: Bearer realm=...`` and the service's ``{"error", "detail"}``
  body (or another shape through ``error_body``: the proxy uses OpenAI's). The caller's key id goes to
  ``scope["state"]["er_key_id"]`` for quotas (:mod:`sandbox.service.quota`).
- :func:`check_bind`: a server on a non-loopback address without keys refuses to start unless told
  ``insecure_no_auth``.
- :func:`check_tls`: the certificate and key files exist, the key is not world-readable and matches.
- :func:`client_api_key`: the key a client sends: ``ER_API_KEY``, else the file ``ER_API_KEY_FILE``.
  Keys are never logged, and no object here shows one in its ``repr``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import ssl
import stat
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

__all__ = ["KeyRing", "KeyFileError", "BearerAuthMiddleware", "check_bind", "check_tls", "client_api_key",
           "key_id_of", "parse_bearer", "is_loopback", "API_KEY_ENV", "API_KEY_FILE_ENV", "MIN_KEY_CHARS",
           "ANONYMOUS", "OPEN_PATHS"]

_log = logging.getLogger("sandbox.service.auth")

#: the environment variables a client reads its key from (the key itself, or a file holding it)
API_KEY_ENV, API_KEY_FILE_ENV = "ER_API_KEY", "ER_API_KEY_FILE"
#: shortest key accepted (``python -c "import secrets; print(secrets.token_urlsafe(32))"`` gives 43)
MIN_KEY_CHARS = 16
#: the key id of callers when authentication is off
ANONYMOUS = "anonymous"
#: routes that never need a key
OPEN_PATHS = ("/health",)
_KEY_RE = re.compile(r"[A-Za-z0-9._~+/=-]+")
_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
_FIX = "chmod 600 {path} (and chown it to the user the server runs as)"


class KeyFileError(ValueError):
    """A key file is missing, unreadable, empty, readable by others or malformed (the message names the fix)."""


def key_id_of(key: str) -> str:
    """The id of an unnamed key: the first 8 hex digits of its SHA-256 (safe to log)."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    return host in _LOOPBACK or host.startswith("127.")


def parse_bearer(header: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header value, or None when absent or not bearer."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def check_private_file(path: str | Path, what: str, *, allow_group: bool = False) -> Path:
    """Check that ``path`` is a regular file its owner alone can read.

    Args:
        path: the file.
        what: what it holds, for the message (``"API key file"``).
        allow_group: accept group-readable files (only world access is refused).

    Returns:
        The path.

    Raises:
        KeyFileError: missing, not a regular file, or readable by others (the message names the fix).

    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise KeyFileError(f"{what} {p} does not exist; create it (one key per line) and {_FIX.format(path=p)}"
                           ) from None
    except OSError as exc:
        raise KeyFileError(f"{what} {p} cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"{what} {p} is not a regular file")
    forbidden = stat.S_IRWXO | (0 if allow_group else stat.S_IRWXG)
    if st.st_mode & forbidden:
        raise KeyFileError(f"{what} {p} has mode {stat.S_IMODE(st.st_mode):o}: others can read it; "
                           f"{_FIX.format(path=p)}")
    return p


def _parse_key_file(path: Path) -> dict[str, bytes]:
    """``{key id: sha256 digest}`` of one key file."""
    check_private_file(path, "API key file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"API key file {path} cannot be read: {exc}") from None
    out: dict[str, bytes] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key_id, sep, key = line.rpartition(":")
        if not sep:
            key_id, key = "", line
        where = f"API key file {path} line {number}"  # never the key itself
        if key_id and not _ID_RE.fullmatch(key_id):
            raise KeyFileError(f"{where}: key id {key_id!r} must be 1-64 of A-Z a-z 0-9 . _ - (write id:key)")
        if not _KEY_RE.fullmatch(key):
            raise KeyFileError(f"{where}: a key is one word of A-Z a-z 0-9 . _ ~ + / = - (no spaces or quotes); "
                               "write one key per line, optionally id:key")
        if len(key) < MIN_KEY_CHARS:
            raise KeyFileError(f"{where}: key of {len(key)} characters, need at least {MIN_KEY_CHARS}; generate "
                               "one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        key_id = key_id or key_id_of(key)
        if key_id in out:
            raise KeyFileError(f"{where}: key id {key_id!r} appears twice; give every key its own id")
        out[key_id] = hashlib.sha256(key.encode()).digest()
    if not out:
        raise KeyFileError(f"API key file {path} holds no key; write one key per line (optionally id:key), e.g. "
                           "python -c 'import secrets; print(\"trainer:\" + secrets.token_urlsafe(32))' > FILE")
    return out


def _split_paths(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        parts: Iterable[Any] = str(paths).split(",")
    else:
        parts = paths
    return [Path(str(p).strip()) for p in parts if str(p).strip()]


class KeyRing:
    """The accepted API keys, as SHA-256 digests, re-read when their files change.

    Args:
        paths: key file(s): a path, a comma-separated list, or a sequence.
        reload_interval_s: how often :meth:`maybe_reload` looks at the files' mtimes (0: never).

    Raises:
        KeyFileError: a file is missing, empty, readable by others or malformed; or two files share a key id.

    """

    def __init__(self, paths: str | os.PathLike | Sequence[str | os.PathLike],
                 reload_interval_s: float = 5.0) -> None:
        self.paths = _split_paths(paths)
        if not self.paths:
            raise KeyFileError("no API key file given; pass --api-key-file FILE (one key per line)")
        self.reload_interval_s = reload_interval_s
        self._lock = threading.Lock()
        self._digests: dict[str, bytes] = {}
        self._mtimes: tuple[float, ...] = ()
        self._checked_at = time.monotonic()
        self.reload()

    def __repr__(self) -> str:
        return f"KeyRing({len(self._digests)} keys from {', '.join(map(str, self.paths))})"

    @property
    def key_ids(self) -> list[str]:
        """The ids of the accepted keys (never the keys)."""
        return sorted(self._digests)

    def _stat(self) -> tuple[float, ...]:
        out = []
        for p in self.paths:
            try:
                out.append(p.stat().st_mtime_ns)
            except OSError:
                out.append(-1)
        return tuple(out)

    def reload(self) -> None:
        """Read the files again now.

        Raises:
            KeyFileError: a file is bad; the keys in use stay as they were.

        """
        mtimes = self._stat()
        merged: dict[str, bytes] = {}
        for path in self.paths:
            for key_id, digest in _parse_key_file(path).items():
                if key_id in merged:
                    raise KeyFileError(f"key id {key_id!r} is in more than one of {', '.join(map(str, self.paths))}")
                merged[key_id] = digest
        with self._lock:
            self._digests, self._mtimes = merged, mtimes

    def maybe_reload(self) -> bool:
        """Re-read the files when ``reload_interval_s`` has passed and a file's mtime changed.

        A file that became bad is logged (naming the file, never a key) and the old keys stay in use,
        so a half-written file never locks every client out.

        Returns:
            Whether the keys were reloaded.

        """
        now = time.monotonic()
        if self.reload_interval_s <= 0 or now - self._checked_at < self.reload_interval_s:
            return False
        self._checked_at = now
        if self._stat() == self._mtimes:
            return False
        try:
            self.reload()
        except KeyFileError as exc:
            _log.error("API keys not reloaded, the previous ones stay in use: %s", exc)
            return False
        _log.info("API keys reloaded: %d key(s), ids %s", len(self._digests), ", ".join(self.key_ids))
        return True

    def identify(self, presented: str | None) -> str | None:
        """The id of the key ``presented``, or None when it is not one of the accepted keys.

        The presented key is hashed, then compared with every stored digest (no early exit), so
        neither which key matched nor a shared prefix changes the work done.
        """
        if not presented:
            return None
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        with self._lock:
            items = list(self._digests.items())
        found: str | None = None
        for key_id, stored in items:
            if hmac.compare_digest(digest, stored) and found is None:
                found = key_id
        return found

    def authenticate(self, header: str | None) -> str | None:
        """The caller's key id from an ``Authorization`` header value (None: refuse).

        This is the shape of ``er_serving.proxy.app.Authenticator``.
        """
        self.maybe_reload()
        return self.identify(parse_bearer(header))


def check_bind(host: str, keys: KeyRing | None, insecure_no_auth: bool, *, what: str = "the reward service",
               key_flag: str = "--api-key-file", insecure_flag: str = "--insecure-no-auth") -> None:
    """Refuse to serve on a non-loopback address without caller keys.

    Args:
        host: the address to bind.
        keys: the key ring, or None when authentication is off.
        insecure_no_auth: the operator accepted an open server.
        what: the server, for the message.
        key_flag: the setting that gives keys, for the message.
        insecure_flag: the setting that accepts an open server, for the message.

    Raises:
        ValueError: non-loopback, no keys, not accepted.

    """
    if keys is not None or is_loopback(host):
        return
    if insecure_no_auth:
        _log.warning("%s binds %s without authentication (%s): anyone who reaches it runs code", what, host,
                     insecure_flag)
        return
    raise ValueError(f"{what} would bind {host} without authentication, and it runs arbitrary code for anyone "
                     f"who reaches it: give caller keys with {key_flag} FILE (one key per line, chmod 600), or "
                     f"pass {insecure_flag} to accept an open server on a trusted network.")


def check_tls(certfile: str, keyfile: str) -> ssl.SSLContext:
    """Check a server certificate and its private key.

    Args:
        certfile: PEM certificate (chain) file.
        keyfile: PEM private key file (must not be world-readable).

    Returns:
        A server :class:`ssl.SSLContext` holding the pair.

    Raises:
        ValueError: only one of the two given, a file missing, unreadable or world-readable, or a key that
            does not match the certificate (naming the files and the fix).

    """
    if bool(certfile) != bool(keyfile):
        raise ValueError(f"TLS needs both tls_certfile and tls_keyfile (got certfile={certfile!r}, "
                         f"keyfile={keyfile!r}); give both, or neither for plain HTTP")
    for path, what in ((certfile, "TLS certificate file"), (keyfile, "TLS key file")):
        if not Path(path).is_file():
            raise ValueError(f"{what} {path} does not exist or is not a file")
    try:
        check_private_file(keyfile, "TLS key file", allow_group=True)
    except KeyFileError as exc:
        raise ValueError(str(exc)) from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:
        raise ValueError(f"TLS key file {keyfile} does not match certificate {certfile} or is not PEM ({exc.reason}); "
                         "give the key the certificate was issued for") from None
    except OSError as exc:
        raise ValueError(f"TLS files {certfile} / {keyfile} cannot be read: {exc}") from None
    return context


def client_api_key(api_key: str | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """The key a client sends: ``api_key``, else ``$ER_API_KEY``, else the first key in ``$ER_API_KEY_FILE``.

    Args:
        api_key: an explicit key (wins).
        environ: the environment (default ``os.environ``).

    Returns:
        The key, or None when none is configured (the client then sends no ``Authorization``).

    Raises:
        KeyFileError: ``$ER_API_KEY_FILE`` names a missing, unreadable, world-readable or empty file.

    """
    if api_key:
        return api_key.strip()
    environ = os.environ if environ is None else environ
    if environ.get(API_KEY_ENV, "").strip():
        return environ[API_KEY_ENV].strip()
    path = environ.get(API_KEY_FILE_ENV, "").strip()
    if not path:
        return None
    check_private_file(path, f"client key file (${API_KEY_FILE_ENV})")
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line.rpartition(":")[2]  # an id:key line sends the key
    raise KeyFileError(f"client key file {path} (${API_KEY_FILE_ENV}) holds no key; write the key on one line")


def _default_error_body(status: int, error: str, detail: str) -> dict[str, Any]:
    return {"error": error, "detail": detail}


class BearerAuthMiddleware:
    """Pure-ASGI bearer-key check in front of an app.

    Args:
        app: the ASGI app.
        keys: the key ring; None turns the check off (every caller is :data:`ANONYMOUS`).
        metrics_open: serve ``/metrics`` without a key (put it on a private bind then).
        open_paths: paths that never need a key (default :data:`OPEN_PATHS`).
        realm: the ``WWW-Authenticate`` realm.
        error_body: ``(status, error, detail) -> JSON body`` of the 401 (default ``{"error", "detail"}``).
        registry: a Prometheus registry for ``er_sandbox_auth_total{key_id, outcome}`` (optional).

    """

    def __init__(self, app: Any, keys: KeyRing | None, *, metrics_open: bool = False,
                 open_paths: Sequence[str] = OPEN_PATHS, realm: str = "er-sandbox",
                 error_body: Callable[[int, str, str], Any] = _default_error_body, registry: Any = None) -> None:
        self.app, self.keys, self.realm, self.error_body = app, keys, realm, error_body
        self.open_paths = set(open_paths) | ({"/metrics"} if metrics_open else set())
        self.counter = None
        if registry is not None:
            from prometheus_client import Counter

            self.counter = Counter("er_sandbox_auth", "Authentication decisions by key id (never the key) and "
                                   "outcome (accepted, missing, invalid).", ["key_id", "outcome"], registry=registry)

    def _count(self, key_id: str, outcome: str) -> None:
        if self.counter is not None:
            self.counter.labels(key_id, outcome).inc()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        """Check the caller's key, then call the app (or answer 401)."""
        if scope["type"] == "websocket" and self.keys is not None:  # no websocket routes: never let one by
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if self.keys is None:
            state["er_key_id"] = ANONYMOUS
            await self.app(scope, receive, send)
            return
        if scope["path"] in self.open_paths:
            state["er_key_id"] = ANONYMOUS
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope.get("headers") or ():
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        key_id = self.keys.authenticate(header)
        if key_id is None:
            presented = parse_bearer(header)
            outcome = "missing" if presented is None else "invalid"
            self._count("", outcome)
            await self._refuse(scope, send, outcome)
            return
        self._count(key_id, "accepted")
        state["er_key_id"] = key_id
        await self.app(scope, receive, send)

    async def _refuse(self, scope: dict, send: Callable, outcome: str) -> None:
        if outcome == "missing":
            detail = "no API key: send the header Authorization: Bearer <key> (clients read $ER_API_KEY or " \
                     "$ER_API_KEY_FILE)"
            challenge = f'Bearer realm="{self.realm}"'
        else:
            detail = "API key not accepted (unknown, revoked or mistyped); ask the operator for a current key"
            challenge = f'Bearer realm="{self.realm}", error="invalid_token"'
        body = json.dumps(self.error_body(401, "unauthorized", detail)).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", challenge.encode())]})
        await send({"type": "http.response.body", "body": body})
