"""The one worker pool (sandbox.core.pool) behind the process, docker and math backends."""

import threading
import time

import pytest

from sandbox.core.pool import WorkerPool


class Fake:
    def __init__(self, slot, n):
        self.slot, self.n, self.stopped, self.dead = slot, n, 0, False


def make(size=2, fail_slots=(), **kw):
    started = []

    def start(slot):
        if slot in fail_slots:
            raise OSError(f"slot {slot} cannot start")
        worker = Fake(slot, len(started))
        started.append(worker)
        return worker

    def stop(worker):
        worker.stopped += 1

    pool = WorkerPool(size, start, stop, alive=lambda w: not w.dead, closed_error=lambda: LookupError("closed"),
                      empty_error=lambda why: KeyError(why), **kw)
    pool.fill()
    return pool, started


def test_retired_worker_is_stopped_once_and_replaced_in_its_slot():
    pool, started = make()
    slot, worker = pool.acquire()
    pool.release(slot, worker, healthy=False, reason="garbage")
    assert worker.stopped == 1 and len(started) == 3 and started[-1].slot == slot
    snap = pool.snapshot()
    assert (snap["live"], snap["idle"], snap["replaced"], snap["last_error"]) == (2, 2, 1, "garbage")
    pool.close()
    assert all(w.stopped == 1 for w in started)  # closing never stops a retired worker twice
    with pytest.raises(LookupError):
        pool.acquire()


def test_every_idle_worker_gets_used_and_dead_ones_are_replaced_before_use():
    pool, started = make()
    started[0].dead = True
    got = [pool.acquire() for _ in range(2)]
    assert sorted(s for s, _ in got) == [0, 1] and all(not w.dead for _, w in got)
    assert started[0].stopped == 1 and pool.snapshot()["replaced"] == 1


def test_failed_starts_are_counted_and_an_empty_pool_says_why():
    pool, _ = make(size=2, fail_slots=(0, 1))
    assert pool.snapshot()["start_failures"] == 2
    with pytest.raises(KeyError, match="cannot start"):
        pool.acquire()


def test_acquire_blocks_until_a_worker_is_released_and_lease_retires_on_error():
    pool, started = make(size=1)
    slot, worker = pool.acquire()
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("got", pool.acquire()))
    t.start()
    time.sleep(0.2)
    assert "got" not in box  # all busy: waits
    pool.release(slot, worker)
    t.join(5)
    assert box["got"] == (slot, worker)
    pool.release(*box["got"])
    with pytest.raises(ValueError):
        with pool.lease():
            raise ValueError("the job broke the worker")
    assert worker.stopped == 1 and pool.snapshot()["replaced"] == 1


def test_background_pool_starts_and_stops_off_the_callers_thread():
    pool, started = make(size=2, background=True)
    slot, worker = pool.acquire()
    pool.release(slot, worker, healthy=False)
    deadline = time.monotonic() + 5
    while pool.snapshot()["idle"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.snapshot()["idle"] == 2 and worker.stopped == 1
    pool.close()
    assert pool.snapshot()["live"] == 0
