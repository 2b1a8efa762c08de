"""Exception hierarchy of the ``sandbox`` package (stdlib only).

User-program failures are never exceptions: they are verdicts. These exceptions mean the
judge could not produce a verdict (bad input, broken infrastructure).
"""

from __future__ import annotations

__all__ = ["SandboxError", "SpecError", "BackendUnavailable", "RunnerProtocolError"]


class SandboxError(RuntimeError):
    """Infrastructure failure: the isolation backend could not run the job."""


class BackendUnavailable(SandboxError):
    """The requested isolation backend cannot work on this machine (reason in the message)."""


class RunnerProtocolError(SandboxError):
    """The runner answered something that is not a valid RunOutcome."""


class SpecError(ValueError):
    """A malformed test spec; the message quotes the bad value and names the fix."""
