"""The reward service and its HTTP edge.

- :mod:`~sandbox.service.service`: :class:`~sandbox.service.service.SandboxService`, judge + math
  checker with admission control, callable in-process (no HTTP).
- :mod:`~sandbox.service.server`: the FastAPI app over the service (``/judge``, ``/run``,
  ``/math/check``, ``/health``, ``/metrics``).
- :mod:`~sandbox.service.wire`: the pydantic request/response shapes (the only pydantic in sandbox).
- :mod:`~sandbox.service.client`: :class:`~sandbox.service.client.SandboxClient` (httpx).
- :mod:`~sandbox.service.config`: service and server configuration (dataclasses, ``ER_SANDBOX_*``).
- :mod:`~sandbox.service.local_server`: start a local server subprocess (tests, demos).
"""
