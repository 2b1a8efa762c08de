"""Isolation backends behind one interface (:class:`~sandbox.core.isolation.IsolationBackend`).

Backends are registered as ``"module:Class"`` strings so importing this package loads none
of them (the docker SDK is imported only when the docker backend is asked for):

- ``process``: :class:`sandbox.isolation.process.ProcessBackend` (no Docker; rlimits,
  separate uid, namespaces where permitted).
- ``docker``: :class:`sandbox.isolation.docker.DockerBackend` (warm container pool).
- ``socket``: :class:`sandbox.isolation.socket.SocketBackend` (compose workers).
"""

from __future__ import annotations

import importlib

from sandbox.core.isolation import IsolationBackend

__all__ = ["BACKENDS", "get_backend", "IsolationBackend"]

BACKENDS: dict[str, str] = {
    "process": "sandbox.isolation.process:ProcessBackend",
    "docker": "sandbox.isolation.docker:DockerBackend",
    "socket": "sandbox.isolation.socket:SocketBackend",
}


def get_backend(name: str, **kwargs) -> IsolationBackend:
    """Build the isolation backend registered as ``name``.

    Args:
        name: ``"process"``, ``"docker"``, ``"socket"`` or a ``"module:Class"`` string.
        **kwargs: passed to the backend's constructor.

    Returns:
        The backend instance.

    Raises:
        ValueError: unknown name.

    """
    target = BACKENDS.get(name, name)
    if ":" not in target:
        raise ValueError(f"unknown isolation backend {name!r}; use one of {sorted(BACKENDS)} or 'module:Class'")
    module_name, _, cls_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(**kwargs)
