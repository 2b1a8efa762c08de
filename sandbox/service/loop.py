"""Run the async core from synchronous code: one background event loop per process (stdlib only).

The service and the client are written once, as coroutines. Their synchronous methods are
thin wrappers that hand the coroutine to :func:`run_sync`, which runs it on a daemon thread's
event loop and blocks for the result. One loop (not ``asyncio.run`` per call) because the
async HTTP client keeps its connection pool on the loop that created it; a thread of its own
because the caller may itself be inside a running loop (a notebook, an async trainer) where
``asyncio.run`` is refused. After ``fork`` the child starts its own loop thread.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_sync", "background_loop"]

T = TypeVar("T")

_lock = threading.Lock()
_state: dict[str, Any] = {"pid": None, "loop": None, "thread": None}


def background_loop() -> asyncio.AbstractEventLoop:
    """The process's background event loop (started on first use, restarted after ``fork``)."""
    with _lock:
        if _state["pid"] != os.getpid() or not _state["thread"].is_alive():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="er-sandbox-loop", daemon=True)
            thread.start()
            _state.update(pid=os.getpid(), loop=loop, thread=thread)
        return _state["loop"]


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the background loop and return its result (or raise its exception).

    Args:
        coro: the coroutine (an ``a...`` method call of the service or the client).

    Returns:
        What the coroutine returned.

    Raises:
        RuntimeError: called from a coroutine running on the background loop itself (it would
            wait for itself forever; await the async method instead).

    """
    loop = background_loop()
    if threading.current_thread() is _state["thread"]:
        coro.close()
        raise RuntimeError("a synchronous sandbox method was called on the sandbox's own event loop; "
                           "await its async twin (ajudge, arun, acheck_math, ...) instead")
    return asyncio.run_coroutine_threadsafe(coro, loop).result()
