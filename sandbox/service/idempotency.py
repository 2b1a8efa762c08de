"""Request ids: a request delivered twice (a client retry after a lost reply) is scored once.

:class:`~sandbox.service.client.SandboxClient` sends ``X-Request-ID``: the SHA-256 of the
request body, so every retry of one request, by the client or by a trainer re-sending
the same completions after an outage, carries the same id. The server keeps the replies
of the last :data:`MAX_REMEMBERED` ids; a request whose id is known gets the first
delivery's reply (awaiting it while it is still being scored) and is counted in
``er_sandbox_duplicate_requests_total``. A failed reply (5xx) is forgotten, so a retry
after a core failure is scored again. Judging and checking are pure functions of the
request, so an answer from this memory is the answer a second scoring would give.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any, Awaitable, Callable

__all__ = ["HEADER", "MAX_REMEMBERED", "Replies"]

#: the request-id header (its value: any string up to 128 characters; the client sends a hex SHA-256)
HEADER = "x-request-id"
#: replies remembered per server process
MAX_REMEMBERED = 4096


class Replies:
    """The replies of recent request ids, one scoring per id.

    Args:
        on_duplicate: called with the endpoint for each request answered from memory.
        size: ids remembered (oldest forgotten first).

    """

    def __init__(self, on_duplicate: Callable[[str], None], size: int = MAX_REMEMBERED) -> None:
        self.on_duplicate, self.size = on_duplicate, size
        self._replies: OrderedDict[tuple[str, str], asyncio.Future] = OrderedDict()

    async def once(self, endpoint: str, request_id: str | None, compute: Callable[[], Awaitable[Any]]) -> Any:
        """``await compute()``, unless ``request_id`` was seen: then the first delivery's reply."""
        if not request_id or len(request_id) > 128:
            return await compute()
        key = (endpoint, request_id)
        known = self._replies.get(key)
        if known is not None:
            self._replies.move_to_end(key)
            self.on_duplicate(endpoint)
            return await asyncio.shield(known)
        task = asyncio.ensure_future(compute())
        self._replies[key] = task
        while len(self._replies) > self.size:
            self._replies.popitem(last=False)
        try:
            reply = await asyncio.shield(task)
        except BaseException:
            self._replies.pop(key, None)
            raise
        if getattr(reply, "status_code", 200) >= 500:  # a core failure: the next delivery is scored again
            self._replies.pop(key, None)
        return reply
