"""Lease semantics on the memory lock: loss detection, release/extend rules, callbacks."""

from __future__ import annotations

import pytest

from dsprims import LockLost, LockNotOwned, ManualClock, MemoryBackend
from dsprims.locks import Lease, LeaseBase, MemoryLock


def _lock(clock: ManualClock, **kw: object) -> MemoryLock:
    return MemoryLock("job", backend=MemoryBackend(), clock=clock, ttl=10.0, **kw)  # type: ignore[arg-type]


def _lost(lease: LeaseBase) -> bool:
    # A function call, so the type checker does not narrow the property between reads.
    return lease.lost


def test_lease_is_lost_after_its_local_deadline_without_a_round_trip(
    manual_clock: ManualClock,
) -> None:
    seen: list[LeaseBase] = []
    lock = _lock(manual_clock, auto_renew=False, on_lost=seen.append)
    lease = lock.acquire()
    lease.check()
    assert not _lost(lease)
    assert lease.remaining == pytest.approx(10.0 - 0.1 - 0.002)
    manual_clock.advance(9.897)
    assert not _lost(lease)
    manual_clock.advance(0.002)
    assert _lost(lease)
    assert lease.lost_reason is not None
    assert "expired" in lease.lost_reason
    with pytest.raises(LockLost):
        lease.check()
    assert lease.lost  # stays lost
    assert seen == [lease]  # fired exactly once
    assert lease.remaining == 0.0


def test_release_and_extend_of_a_lost_lease_raise_lock_lost(manual_clock: ManualClock) -> None:
    lock = _lock(manual_clock, auto_renew=False)
    lease = lock.acquire()
    manual_clock.advance(11)
    with pytest.raises(LockLost):
        lease.extend()
    with pytest.raises(LockLost):
        lease.release()


def test_lost_lease_never_comes_back_even_if_the_store_still_has_it(
    manual_clock: ManualClock,
) -> None:
    lock = _lock(manual_clock, auto_renew=False)
    lease = lock.acquire()
    # The local deadline (drift reserve) passes while the store's lease is still running.
    manual_clock.advance(9.95)
    assert lease.lost
    with pytest.raises(LockLost):
        lease.release()
    # The best-effort release freed the store: the next holder gets it at once.
    assert lock.try_acquire() is not None


def test_release_twice_is_a_no_op_and_extend_after_release_is_refused(
    manual_clock: ManualClock,
) -> None:
    lock = _lock(manual_clock, auto_renew=False)
    lease = lock.acquire()
    lease.release()
    lease.release()
    assert lease.released
    assert not lease.lost
    with pytest.raises(LockNotOwned):
        lease.extend()
    with pytest.raises(LockNotOwned):
        lease.check()
    assert "released" in repr(lease)


def test_extend_moves_the_deadline(manual_clock: ManualClock) -> None:
    lock = _lock(manual_clock, auto_renew=False)
    lease = lock.acquire()
    manual_clock.advance(9)
    lease.extend(20)
    assert lease.ttl == 20
    manual_clock.advance(15)
    assert not lease.lost
    other = lock.try_acquire()
    assert other is None


def test_marked_lost_by_the_driver_fires_once(manual_clock: ManualClock) -> None:
    calls: list[str] = []
    lock = _lock(manual_clock, on_lost=lambda lease: calls.append(str(lease.lost_reason)))
    lease = lock.acquire()
    assert lease._mark_lost("session LOST")
    assert not lease._mark_lost("again")
    assert calls == ["session LOST"]
    assert lease.lost


def test_on_lost_errors_are_contained(manual_clock: ManualClock) -> None:
    def boom(_: LeaseBase) -> None:
        raise RuntimeError("callback bug")

    lease = _lock(manual_clock, on_lost=boom).acquire()
    assert lease._mark_lost("x")  # no exception escapes


def test_a_taken_over_lease_learns_it_at_extend(manual_clock: ManualClock) -> None:
    lock = _lock(manual_clock, auto_renew=False, clock_drift=0.0)
    lease = lock.acquire()
    # Simulate a pause: the store's lease ends and someone else takes the lock ...
    manual_clock.advance(10.0)
    second = lock.acquire(timeout=0)
    # ... and the local deadline passed too, so the holder knows without asking.
    assert lease.lost
    assert second.token > lease.token
    second.release()


def test_context_manager_releases_and_reports_loss(manual_clock: ManualClock) -> None:
    lock = _lock(manual_clock, auto_renew=False)
    with lock.acquire() as lease:
        assert isinstance(lease, Lease)
    assert lease.released
    with pytest.raises(LockLost), lock.acquire() as lease2:
        manual_clock.advance(20)
    assert lease2.lost

    # An exception in the body is never masked by the release.
    def body() -> None:
        with lock.acquire():
            manual_clock.advance(20)
            raise KeyError("body")

    with pytest.raises(KeyError):
        body()


def test_with_lock_statement(manual_clock: ManualClock) -> None:
    lock = _lock(manual_clock, auto_renew=False)
    with lock as lease:
        assert lock.try_acquire() is None
        with MemoryLock("other", clock=manual_clock) as inner:
            assert inner.token > 0
    assert lease.released
    assert lock.try_acquire() is not None


def test_repr_hides_the_owner_secret(manual_clock: ManualClock) -> None:
    lease = _lock(manual_clock).acquire()
    assert lease.owner not in repr(lease)
    assert "held" in repr(lease)
