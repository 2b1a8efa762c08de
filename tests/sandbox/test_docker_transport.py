"""How a failed exchange with a warm container is classified (no engine needed): a container that is gone
(broken pipe, reset, or a closed stream found after a timeout) is a death, which the backend retries once on
another container; a live container that stays silent is not (its job could run twice)."""

from __future__ import annotations

import pytest

from sandbox.core.jobs import RunJob, TestInput
from sandbox.isolation.docker import _TransportError, _Worker


class _Stream:
    def __init__(self, exc: BaseException, closed: bool) -> None:
        self.exc, self.closed = exc, closed

    def send(self, data: bytes, deadline: float) -> None:
        raise self.exc

    def peer_closed(self) -> bool:
        return self.closed

    def stderr_tail(self) -> str:
        return ""


def _worker(exc: BaseException, closed: bool) -> _Worker:
    worker = _Worker.__new__(_Worker)  # no container: only the transport classification is under test
    worker.id, worker.jobs, worker.sandbox_uid, worker.stream = "c0ffee", 0, 60001, _Stream(exc, closed)
    return worker


@pytest.mark.parametrize("exc, closed, died", [
    (BrokenPipeError(32, "Broken pipe"), False, True),       # exited after the pool's alive check
    (ConnectionResetError(104, "reset"), False, True),
    (TimeoutError("timed out"), True, True),                 # OOM-killed mid-job, stream closed by the deadline
    (TimeoutError("timed out"), False, False),               # alive and silent: not retried
    (OSError(9, "Bad file descriptor"), False, False),
])
def test_transport_failures_are_deaths_only_when_the_container_is_gone(exc, closed, died):
    job = RunJob(source="print(1)", tests=(TestInput(stdin=""),))
    with pytest.raises(_TransportError) as info:
        _worker(exc, closed).run(job, deadline=0.0)
    assert info.value.died is died, info.value
