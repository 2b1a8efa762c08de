"""Run the async core from synchronous code.

The project writes I/O-bound logic once, as coroutines (reward clients, the OpenAI backend,
the sandbox client and service); the blocking entry points are thin wrappers that call
:func:`run_sync`. There is one implementation, :func:`sandbox.service.loop.run_sync`: one
background event loop per process, safe to call from inside a running loop (a notebook, an
async trainer), restarted after ``fork``. This module is its import path for ``er_env``.
"""

from __future__ import annotations

from sandbox.service.loop import run_sync

__all__ = ["run_sync"]
