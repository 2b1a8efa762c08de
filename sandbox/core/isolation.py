"""The isolation backend interface: run a RunJob inside a boundary, get a RunOutcome.

A backend moves a :class:`~sandbox.core.jobs.RunJob` across an isolation boundary (as the
JSON of the runner protocol, :mod:`sandbox.runner.job`), runs :func:`sandbox.runner.job.run_job`
there, and returns the answer as a typed :class:`~sandbox.core.jobs.RunOutcome`
(:meth:`~sandbox.core.jobs.RunOutcome.from_wire` validates it). Implementations:

- ``process`` (:mod:`sandbox.isolation.process`): pre-forked runner subprocesses with
  rlimits, a separate uid and Linux namespaces where permitted. No Docker needed.
- ``docker`` (:mod:`sandbox.isolation.docker`): warm locked-down containers.
- ``socket`` (:mod:`sandbox.isolation.socket`): compose workers over unix sockets.

Contract: ``execute`` never raises for anything the user program does (those are test
statuses inside the outcome). It raises :class:`~sandbox.core.errors.SandboxError` when the
boundary itself fails (worker died, timed out, malformed answer); the judge turns that
into ``INTERNAL_ERROR``, never into a wrong answer.
"""

from __future__ import annotations

import abc
from typing import Any

from sandbox.core.errors import BackendUnavailable, RunnerProtocolError, SandboxError
from sandbox.core.jobs import RunJob, RunOutcome

__all__ = ["IsolationBackend", "RunJob", "RunOutcome", "SandboxError", "BackendUnavailable", "RunnerProtocolError"]


class IsolationBackend(abc.ABC):
    """Runs the in-boundary runner on a job.

    Attributes:
        name: the registry name (``"process"``, ``"docker"``, ``"socket"``).

    """

    name: str = "abstract"

    @abc.abstractmethod
    def execute(self, job: RunJob) -> RunOutcome:
        """Run ``job`` inside the boundary.

        Args:
            job: the job.

        Returns:
            The runner's outcome.

        Raises:
            SandboxError: the boundary failed (never for user-program failures).

        """

    def health(self) -> dict[str, Any]:
        """A JSON-able health report (``{"backend": name, "ok": bool, ...}``)."""
        return {"backend": self.name, "ok": True}

    def close(self) -> None:  # noqa: B027 - optional hook: a backend without workers has nothing to release
        """Release workers/containers. Idempotent."""

    def __enter__(self) -> "IsolationBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
