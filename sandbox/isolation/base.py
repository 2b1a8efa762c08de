"""The isolation backend interface: run a RunJob inside a boundary, get a RunOutcome.

A backend moves a RunJob (a plain JSON-able dict, protocol documented in
:mod:`sandbox.runner.job`) across an isolation boundary, runs :func:`sandbox.runner.job.run_job`
there, and returns the RunOutcome dict unchanged. Implementations:

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

__all__ = ["IsolationBackend", "RunJob", "RunOutcome", "SandboxError", "BackendUnavailable",
           "RunnerProtocolError", "check_outcome", "job_deadline_s"]

RunJob = dict[str, Any]
"""A RunJob dict, see :mod:`sandbox.runner.job` (protocol 1)."""

RunOutcome = dict[str, Any]
"""A RunOutcome dict, see :mod:`sandbox.runner.job` (protocol 1)."""


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
            job: a RunJob dict.

        Returns:
            The RunOutcome dict produced by the runner.

        Raises:
            SandboxError: the boundary failed (never for user-program failures).
        """

    def health(self) -> dict[str, Any]:
        """A JSON-able health report (``{"backend": name, "ok": bool, ...}``)."""
        return {"backend": self.name, "ok": True}

    def close(self) -> None:
        """Release workers/containers. Idempotent."""

    def __enter__(self) -> "IsolationBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_outcome(outcome: Any) -> RunOutcome:
    """Validate the shape of a RunOutcome received from across the boundary.

    Args:
        outcome: the decoded answer.

    Returns:
        ``outcome`` itself.

    Raises:
        RunnerProtocolError: not a protocol-1 RunOutcome.
    """
    if not isinstance(outcome, dict) or outcome.get("protocol") != 1 or not isinstance(outcome.get("tests"), list):
        raise RunnerProtocolError(f"runner answered something that is not a protocol-1 RunOutcome: {outcome!r:.200}")
    if outcome.get("status") not in ("ok", "compile_error", "error"):
        raise RunnerProtocolError(f"RunOutcome status {outcome.get('status')!r} unknown")
    return outcome


def job_deadline_s(job: RunJob, slack_s: float = 30.0) -> float:
    """An upper bound for how long the runner may take on ``job`` (for transport timeouts).

    Args:
        job: the RunJob.
        slack_s: added for compilation, start-up and transfers.

    Returns:
        Seconds: number of tests x wall limit (+ the compile wall limit for C++) + slack.
    """
    from sandbox.runner.job import COMPILE_LIMITS, DEFAULT_LIMITS

    wall = (job.get("limits") or {}).get("wall_time_limit_s") or DEFAULT_LIMITS["wall_time_limit_s"]
    n_tests = len(job.get("tests") or [1])
    compile_s = COMPILE_LIMITS["wall_time_limit_s"] if job.get("language") == "cpp" else 0.0
    return n_tests * float(wall) + compile_s + slack_s
