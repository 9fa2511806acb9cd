"""MemoryLock / AsyncMemoryLock: exclusion, FIFO, timeouts, cancellation, renewal."""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections.abc import Callable

import pytest

from dsprims import (
    ConfigurationError,
    LockLost,
    LockNotAcquired,
    ManualClock,
    MemoryBackend,
)
from dsprims.locks import AsyncMemoryLock, LeaseBase, MemoryLock
from dsprims.locks._scheduler import shared_scheduler
from dsprims.locks.memory import _MemoryLockStore


def test_threads_never_lose_an_update() -> None:
    backend = MemoryBackend()
    counter = {"n": 0}
    tokens: list[int] = []

    def work() -> None:
        lock = MemoryLock("counter", backend=backend)
        for _ in range(50):
            with lock.acquire(timeout=10) as lease:
                value = counter["n"]
                time.sleep(0)
                counter["n"] = value + 1
                tokens.append(lease.token)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter["n"] == 200
    assert tokens == sorted(tokens)
    assert len(set(tokens)) == 200


def test_waiters_are_served_in_arrival_order() -> None:
    backend = MemoryBackend()
    lock = MemoryLock("fifo", backend=backend)
    holder = lock.acquire()
    order: list[int] = []
    started: list[threading.Event] = []
    threads = []
    for i in range(5):
        ready = threading.Event()
        started.append(ready)

        def wait(i: int = i, ready: threading.Event = ready) -> None:
            ready.set()
            with lock.acquire(timeout=10):
                order.append(i)

        t = threading.Thread(target=wait)
        t.start()
        ready.wait()
        # Until the waiter is queued, the next one must not start.
        for _ in range(1000):
            state = lock._store.decisions.state()  # type: ignore[attr-defined]
            if state is not None and len(state.queue) == i + 1:
                break
            time.sleep(0.001)
        threads.append(t)
    holder.release()
    for t in threads:
        t.join()
    assert order == [0, 1, 2, 3, 4]


def test_timeout_and_try_acquire(manual_clock: ManualClock) -> None:
    lock = MemoryLock("t", clock=manual_clock, auto_renew=False)
    lease = lock.acquire()
    assert lock.try_acquire() is None
    before = manual_clock.monotonic()
    with pytest.raises(LockNotAcquired):
        lock.acquire(timeout=2.5)
    assert manual_clock.monotonic() - before == pytest.approx(2.5)
    with pytest.raises(LockNotAcquired):
        lock.acquire(timeout=0)
    # A crashed holder (never releases) is noticed right after its lease ends.
    second = lock.acquire(timeout=30)
    assert second.token > lease.token
    assert manual_clock.monotonic() - before <= 10.0 + 0.01
    state = lock._store.decisions.state()  # type: ignore[attr-defined]
    assert state is not None
    assert state.queue == ()


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match="ttl"):
        MemoryLock("x", ttl=0)
    with pytest.raises(ConfigurationError, match="ttl"):
        MemoryLock("x", ttl=math.nan)
    with pytest.raises(ConfigurationError, match="name"):
        MemoryLock("")
    with pytest.raises(TypeError, match="name"):
        MemoryLock(5)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="timeout"):
        MemoryLock("x").acquire(timeout=-1)
    with pytest.raises(TypeError, match="backend"):
        MemoryLock("x", backend=object())
    with pytest.raises(TypeError, match="on_lost"):
        MemoryLock("x", on_lost=3)  # type: ignore[arg-type]


def test_names_are_isolated_and_tokens_are_per_name() -> None:
    backend = MemoryBackend()
    a = MemoryLock("a", backend=backend).acquire()
    b = MemoryLock("a}:{b", backend=backend).acquire()
    assert a.token > 0
    assert b.token > 0
    a.release()
    b.release()


def test_watchdog_renews_a_held_lease_and_stops_on_release() -> None:
    lock = MemoryLock("renewed", ttl=0.3)
    lease = lock.acquire()
    first_deadline = lease.deadline
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and lease.deadline == first_deadline:
        time.sleep(0.01)
    assert lease.deadline is not None
    assert first_deadline is not None
    assert lease.deadline > first_deadline
    time.sleep(0.4)  # past the original lease: only renewals keep it alive
    assert not lease.lost
    assert lock.try_acquire() is None
    lease.release()
    assert lock.try_acquire() is not None


def test_max_hold_stops_renewal_and_fires_on_lost() -> None:
    lost = threading.Event()
    seen: list[LeaseBase] = []

    def on_lost(lease: LeaseBase) -> None:
        seen.append(lease)
        lost.set()

    lock = MemoryLock("capped", ttl=0.2, max_hold=0.4, on_lost=on_lost)
    lease = lock.acquire()
    assert lost.wait(5)
    assert seen == [lease]
    assert lease.lost
    with pytest.raises(LockLost):
        lease.release()
    assert lock.try_acquire() is not None


def test_dropped_lease_is_not_renewed_forever() -> None:
    lock = MemoryLock("dropped", ttl=60)
    before = shared_scheduler().pending()
    lease = lock.acquire()
    assert shared_scheduler().pending() == before + 1
    lease.release()
    assert shared_scheduler().pending() == before


async def test_async_lock_and_sync_lock_share_a_backend() -> None:
    backend = MemoryBackend()
    sync_lock = MemoryLock("shared", backend=backend)
    async_lock = AsyncMemoryLock("shared", backend=backend)
    lease = sync_lock.acquire()
    waiter = asyncio.ensure_future(async_lock.acquire(timeout=5))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    lease.release()
    alease = await waiter
    assert alease.token > lease.token
    await alease.release()


async def test_cancelled_async_acquires_leave_nothing_behind() -> None:
    backend = MemoryBackend()
    lock = AsyncMemoryLock("cancel", backend=backend)
    holder = await lock.acquire()
    rng = random.Random(7)

    async def contender() -> None:
        try:
            lease = await asyncio.wait_for(lock.acquire(), rng.uniform(0, 0.02))
        except TimeoutError:
            return
        await lease.release()

    await asyncio.gather(*(contender() for _ in range(200)))
    await lock.settle()
    state = lock._store.decisions.state()  # type: ignore[attr-defined]
    assert state is not None
    assert state.queue == ()
    assert state.owner == holder.owner
    await holder.release()
    assert await lock.try_acquire() is not None


async def test_async_timeout_on_a_manual_clock(manual_clock: ManualClock) -> None:
    lock = AsyncMemoryLock("m", clock=manual_clock, auto_renew=False)
    lease = await lock.acquire()
    with pytest.raises(LockNotAcquired):
        await lock.acquire(timeout=1)
    async with lock.__class__("m2", clock=manual_clock) as other:
        assert other.token > 0
    manual_clock.advance(11)
    assert lease.lost


def test_with_lock_exits_in_any_order_and_rejects_an_unmatched_exit() -> None:
    outer, inner = MemoryLock("outer", auto_renew=False), MemoryLock("inner", auto_renew=False)
    with outer as first:
        second = inner.__enter__()
        assert outer.try_acquire() is None  # held by first
    # Left the outer block first: its lease was found below the innermost one and released.
    again = outer.try_acquire()
    assert again is not None
    assert again.token > first.token
    again.release()
    assert inner.try_acquire() is None  # the inner lease is still held
    inner.__exit__(None, None, None)
    after = inner.try_acquire()
    assert after is not None
    assert after.token > second.token
    after.release()
    with pytest.raises(RuntimeError, match="without a matching enter"):
        inner.__exit__(None, None, None)


class _ReleasingClock(ManualClock):
    """A manual clock whose ``sleep`` (a waiter blocking) advances ``step`` seconds and then
    runs the queued actions: a release that happens while the waiter blocks."""

    def __init__(self, start: float, step: float) -> None:
        super().__init__(start)
        self.step = step
        self.during_sleep: list[Callable[[], object]] = []

    def sleep(self, seconds: float) -> None:
        self.advance(min(seconds, self.step))
        while self.during_sleep:
            self.during_sleep.pop(0)()


def _handed_over(ttl: float, step: float) -> tuple[LeaseBase, int, list[float]]:
    """A waiter blocks ``step`` s and is handed the lock by a release meanwhile; returns its
    lease, the token the hand-off carried, and the ttl of each ``extend`` it sent."""
    clock = _ReleasingClock(1000.0, step)
    lock = MemoryLock("handoff", clock=clock, ttl=ttl, clock_drift=0.0)
    holder = lock.acquire()
    handed: list[int] = []
    extends: list[float] = []
    store = lock._store
    assert isinstance(store, _MemoryLockStore)
    release, extend = store.release, store.extend

    def release_and_note(owner: str) -> bool:
        ok = release(owner)
        state = store.decisions.state()
        assert state is not None
        handed.append(state.token)
        return ok

    def counting_extend(owner: str, ttl: float) -> bool:
        extends.append(ttl)
        return extend(owner, ttl)

    store.extend = counting_extend
    clock.during_sleep.append(lambda: release_and_note(holder.owner))
    lease = lock.acquire(timeout=10)
    assert lease.token == handed[0] > holder.token
    return lease, handed[0], extends


def test_a_hand_off_is_held_from_the_last_attempt_without_asking_again() -> None:
    # ttl 1 s fits in the waiter's queue entry (3 s): the whole ttl is handed over.
    lease, _, extends = _handed_over(ttl=1.0, step=0.1)
    assert extends == []
    # Counted from just before the waiter's last attempt (at 1000.0), not from the wake-up.
    assert lease.deadline == pytest.approx(1000.0 + 1.0 - 0.002)
    assert lease.ttl == pytest.approx(1.0)


def test_a_long_blocked_or_cut_hand_off_is_extended_at_once() -> None:
    # Blocked 0.7 s of a 1 s lease: less than half is left, one extend refreshes it.
    lease, _, extends = _handed_over(ttl=1.0, step=0.7)
    assert extends == [1.0]
    assert lease.deadline == pytest.approx(1000.7 + 1.0 - 0.002)
    # ttl 10 s is cut to what is left of the 3 s queue entry; nothing renews on a manual
    # clock, so the waiter extends to the 10 s it was promised.
    lease, _, extends = _handed_over(ttl=10.0, step=0.1)
    assert extends == [10.0]
    assert lease.deadline == pytest.approx(1000.1 + 10.0 - 0.002)


def test_a_waiter_that_gives_up_passes_a_hand_off_on() -> None:
    clock = ManualClock(1000.0)
    lock = MemoryLock("pass-on", clock=clock, auto_renew=False)
    holder = lock.acquire()
    store = lock._store
    for ticket in ("t1", "t2"):
        store.open_ticket(ticket)
    assert not store.attempt("o1", "t1").granted
    assert not store.attempt("o2", "t2").granted
    holder.release()  # handed to o1 ...
    store.leave("o1", "t1")  # ... which gave up at that moment: o2 gets it
    assert store.wait("t1", 0.0) is None
    handed = store.wait("t2", 0.0)
    assert handed is not None
    assert handed.token > holder.token
    assert store.release("o2")
    assert lock.try_acquire() is not None
