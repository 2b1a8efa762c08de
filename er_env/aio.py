"""Run the async core from synchronous code (stdlib only).

The project writes I/O-bound logic once, as coroutines (reward clients, the OpenAI
backend); the blocking entry points are thin wrappers that call :func:`run_sync`.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Coroutine, TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T], *, thread_name: str = "er-run-sync") -> T:
    """Run ``coro`` to completion and return its result, from any synchronous caller.

    Outside an event loop this is ``asyncio.run``. Inside one (a notebook, an async
    trainer calling a blocking API) the coroutine runs on a fresh loop in a helper
    thread, so the caller's loop is never re-entered; its exception is re-raised here.

    Args:
        coro: the coroutine to run (consumed).
        thread_name: name of the helper thread, for debuggers.

    Returns:
        The coroutine's result.

    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def runner() -> None:
        try:
            box["out"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
            box["err"] = exc

    thread = threading.Thread(target=runner, name=thread_name)
    thread.start()
    thread.join()
    if "err" in box:
        raise box["err"]
    return box["out"]
