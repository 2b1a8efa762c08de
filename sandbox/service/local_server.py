"""Start the reward service as a local subprocess (tests, benchmarks, notebooks).

:class:`LocalServer` runs ``uvicorn --factory sandbox.service.server:app_from_env`` on
127.0.0.1 with a free port, configured through ``ER_SANDBOX_*`` environment variables
(the same path a container uses), waits until ``/health`` answers, and stops the
process (and only it) on exit. With ``tls_certfile``/``tls_keyfile`` it serves HTTPS
(``url`` starts with ``https://``).

Example:
    >>> with LocalServer(judge_workers=2) as server:                       # doctest: +SKIP
    ...     SandboxClient(server.url).health()["ok"]
    True

"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

__all__ = ["LocalServer", "free_port"]

_REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class LocalServer:
    """The reward service in a child process bound to 127.0.0.1.

    Args:
        port: TCP port (default: a free one).
        startup_timeout_s: how long to wait for ``/health`` to answer.
        log_level: uvicorn log level.
        **settings: :class:`sandbox.service.server.ServerConfig` fields, passed as ``ER_SANDBOX_*``
            variables (dicts are JSON-encoded).

    Raises:
        RuntimeError: the server exited or did not answer within ``startup_timeout_s``
            (the message carries its log tail).
        ValueError: (at start) bad TLS files, naming them.

    """

    def __init__(self, port: int | None = None, *, startup_timeout_s: float = 60.0, log_level: str = "warning",
                 **settings: Any) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port(self.host)
        self.tls = bool(settings.get("tls_certfile"))
        self.url = f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"
        self.startup_timeout_s = startup_timeout_s
        self.settings = {**settings, "log_level": log_level}
        self.proc: subprocess.Popen | None = None
        self._log: Any = None  # a temporary file holding the server's output while it runs

    def _env(self) -> dict[str, str]:
        import json

        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH")]))
        for key, value in self.settings.items():
            env[f"ER_SANDBOX_{key.upper()}"] = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        return env

    def start(self) -> "LocalServer":
        """Start the process and wait for ``/health`` to answer (200 or 503)."""
        import tempfile

        if self.tls:  # uvicorn loads the pair before the app's own check runs: check it here, naming the files
            from sandbox.service.auth import check_tls

            check_tls(str(self.settings["tls_certfile"]), str(self.settings.get("tls_keyfile", "")))
        self._log = tempfile.TemporaryFile()
        argv = [sys.executable, "-m", "uvicorn", "--factory", "sandbox.service.server:app_from_env",
                "--host", self.host,
                "--port", str(self.port), "--log-level", str(self.settings["log_level"])]
        if self.tls:  # uvicorn serves HTTPS itself; the app checks the pair at start
            argv += ["--ssl-certfile", str(self.settings["tls_certfile"]),
                     "--ssl-keyfile", str(self.settings["tls_keyfile"])]
        self.proc = subprocess.Popen(argv, env=self._env(), stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=str(_REPO_ROOT))
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"reward server exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                # /health is open even with keys; a self-signed certificate is its own CA
                httpx.get(f"{self.url}/health", timeout=30.0,
                          verify=str(self.settings["tls_certfile"]) if self.tls else True)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"reward server at {self.url} did not answer within {self.startup_timeout_s} s: "
                           f"{self.log_tail()}")

    def log_tail(self, n_bytes: int = 3000) -> str:
        """The last ``n_bytes`` of the server's output."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-n_bytes:]

    def stop(self) -> None:
        """Terminate the server process (SIGTERM, then SIGKILL after 10 s). Idempotent."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None
