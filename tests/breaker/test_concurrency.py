"""Half-open permits are exact under threads and asyncio; CLOSED calls run in parallel."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import pytest

from dsprims import (
    AsyncCircuitBreaker,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    ManualClock,
)
from tests.interrupts import InterruptedTake

REPETITIONS = 200
THREADS = 16
TASKS = 64


def state_of(breaker: CircuitBreaker | AsyncCircuitBreaker) -> BreakerState:
    # A call, not an attribute: mypy would otherwise narrow ``breaker.state`` across calls.
    return breaker.state


def test_half_open_admits_exactly_two_of_sixteen_threads() -> None:
    b = CircuitBreaker("ho-threads", half_open_calls=2, minimum_calls=1, window_size=1)
    start = threading.Barrier(THREADS + 1, timeout=30)
    end = threading.Barrier(THREADS + 1, timeout=30)
    reported = threading.Semaphore(0)
    release = threading.Event()
    entered = 0
    rejected = 0
    count_lock = threading.Lock()

    def trial() -> None:
        nonlocal entered
        with count_lock:
            entered += 1
        reported.release()
        assert release.wait(30)

    def worker() -> None:
        nonlocal rejected
        for _ in range(REPETITIONS):
            start.wait()
            try:
                b.call(trial)
            except CircuitOpenError:
                with count_lock:
                    rejected += 1
                reported.release()
            end.wait()

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for t in threads:
        t.start()
    try:
        for _ in range(REPETITIONS):
            b.transition_to_half_open()
            entered = rejected = 0
            start.wait()
            for _ in range(THREADS):
                assert reported.acquire(timeout=30)
            assert (entered, rejected) == (2, THREADS - 2)
            release.set()
            end.wait()
            release.clear()
            assert state_of(b) is BreakerState.CLOSED  # both trials succeeded
    finally:
        release.set()
        for t in threads:
            t.join(timeout=30)


async def _one_half_open_round(b: AsyncCircuitBreaker) -> None:
    await b.transition_to_half_open()
    release = asyncio.Event()
    all_in = asyncio.Event()
    entered = 0
    attempts = 0

    def attempted() -> None:
        nonlocal attempts
        attempts += 1
        if attempts == TASKS:
            all_in.set()

    async def trial() -> None:
        nonlocal entered
        entered += 1
        attempted()
        await release.wait()

    async def one() -> bool:
        await asyncio.sleep(0)
        try:
            await b.call(trial)
        except CircuitOpenError:
            attempted()
            return False
        return True

    tasks = [asyncio.create_task(one()) for _ in range(TASKS)]
    await asyncio.wait_for(all_in.wait(), 30)
    assert entered == 2
    release.set()
    results = await asyncio.gather(*tasks)
    assert sum(results) == 2
    assert state_of(b) is BreakerState.CLOSED


async def test_half_open_admits_exactly_two_of_sixty_four_tasks() -> None:
    b = AsyncCircuitBreaker("ho-tasks", half_open_calls=2, minimum_calls=1, window_size=1)
    for _ in range(REPETITIONS):
        await _one_half_open_round(b)


def test_closed_calls_run_in_parallel() -> None:
    n = 8
    b = CircuitBreaker("parallel")
    inside = threading.Barrier(n, timeout=30)  # breaks unless all n are inside at once
    errors: list[BaseException] = []

    def protected() -> int:
        return inside.wait()

    def worker() -> None:
        try:
            b.call(protected)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert b.metrics().calls == n


def test_concurrent_outcomes_keep_the_window_consistent() -> None:
    b = CircuitBreaker(
        "stress", window_size=50, minimum_calls=50, failure_rate_threshold=1.0, clock=ManualClock()
    )
    go = threading.Barrier(8, timeout=30)

    def worker(k: int) -> None:
        go.wait()
        for i in range(2000):
            permit = b.try_acquire()
            if (i + k) % 3 == 0:
                permit.failure()
            else:
                permit.success()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    m = b.metrics()
    assert m.calls == 50
    assert 0 < m.failed_calls < 50
    assert state_of(b) is BreakerState.CLOSED


@pytest.mark.parametrize("permits", [1, 3])
def test_stale_generation_results_are_discarded(permits: int) -> None:
    clock = ManualClock()
    b = CircuitBreaker(
        "stale",
        minimum_calls=1,
        window_size=1,
        half_open_calls=permits,
        open_duration=1.0,
        clock=clock,
    )
    old = b.try_acquire()  # admitted while CLOSED
    b.force_open()
    b.transition_to_half_open()
    trials = [b.try_acquire() for _ in range(permits)]
    old.failure()  # from generation 0: must not count as a trial
    assert b.metrics().half_open_calls_done == 0
    for t in trials:
        t.success()
    assert state_of(b) is BreakerState.CLOSED


def test_rejections_are_counted_exactly_across_threads() -> None:
    b = CircuitBreaker("count-rejections")
    b.force_open()
    go = threading.Barrier(8, timeout=30)

    def worker() -> None:
        go.wait()
        for i in range(1000):
            with contextlib.suppress(CircuitOpenError):
                b.call(int)
            if i % 100 == 0:
                b.metrics()  # reading the counter must not count as a rejection

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert b.metrics().not_permitted_calls == 8000
    b.reset()
    assert b.metrics().not_permitted_calls == 0


@pytest.mark.parametrize("window_type", ["count", "time"])
def test_an_interrupt_as_a_success_takes_the_lock_leaves_it_free(window_type: str) -> None:
    # CPython raises KeyboardInterrupt at its next check for pending calls, which follows the
    # mutex token's take(): raised there, with the token taken. The breaker keeps working.
    b = CircuitBreaker(
        "interrupted",
        window_type=window_type,  # type: ignore[arg-type]
        window_size=10,
        minimum_calls=10,
        clock=ManualClock(),
    )
    with contextlib.suppress(ZeroDivisionError):
        b.call(lambda: 1 / 0)  # a failure in the window: successes take the lock
    engine = b._engine
    interrupted = InterruptedTake(engine._take)
    engine._take = interrupted
    with pytest.raises(KeyboardInterrupt):
        b.call(lambda: 1)
    assert not interrupted.armed  # the interrupt came from the success's take()
    assert b.call(lambda: 2) == 2  # the lock is free: this success is recorded
    with contextlib.suppress(ZeroDivisionError):
        b.call(lambda: 1 / 0)
    assert (b.metrics().calls, b.metrics().failed_calls) == (3, 2)
