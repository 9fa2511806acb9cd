from __future__ import annotations

import threading

import pytest

from dsprims import ManualClock, MemoryBackend
from dsprims.backends import AsyncMemoryBackend
from tests.interrupts import InterruptedTake


def _incr(old: int | None) -> tuple[int, int]:
    new = (old or 0) + 1
    return new, new


def test_transact_is_read_modify_write() -> None:
    backend = MemoryBackend()
    assert backend.transact("k", _incr) == 1
    assert backend.transact("k", _incr) == 2
    assert backend.get("k") == 2


def test_returning_none_deletes_the_key() -> None:
    backend = MemoryBackend()
    backend.transact("k", _incr)
    assert backend.transact("k", lambda old: (old, None)) == 1
    assert backend.get("k") is None
    assert len(backend) == 0


def test_expiry_runs_on_the_writers_clock() -> None:
    clock = ManualClock()
    backend = MemoryBackend()
    backend.transact("k", _incr, ttl=10, clock=clock)
    clock.advance(9.999)
    assert backend.get("k") == 1
    clock.advance(0.001)
    assert backend.get("k") is None
    assert backend.transact("k", _incr, ttl=10, clock=clock) == 1


def test_real_time_never_expires_state_of_a_pinned_clock() -> None:
    clock = ManualClock()
    backend = MemoryBackend()
    backend.transact("k", _incr, ttl=1e-9, clock=clock)
    assert backend.get("k") == 1  # the pinned clock has not moved, whatever real time did


def test_idle_keys_are_swept_so_memory_stays_bounded() -> None:
    clock = ManualClock()
    backend = MemoryBackend()
    for i in range(5000):
        backend.transact(f"k{i}", _incr, ttl=1.0, clock=clock)
        clock.advance(0.01)
    # Only keys written in the last second can be live; the sweep freed the rest.
    assert len(backend._entries) <= 2 * 1024 + 100
    assert len(backend) <= 101


def test_delete_reports_liveness() -> None:
    backend = MemoryBackend()
    assert backend.delete("k") is False
    backend.transact("k", _incr)
    assert backend.delete("k") is True
    assert backend.keys() == []


def test_transact_failure_leaves_state_unchanged() -> None:
    backend = MemoryBackend()
    backend.transact("k", _incr)

    def boom(old: int | None) -> tuple[int, int]:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        backend.transact("k", boom)
    assert backend.get("k") == 1


def test_concurrent_transactions_lose_no_update() -> None:
    backend = MemoryBackend()

    def work() -> None:
        for _ in range(2000):
            backend.transact("n", _incr)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert backend.get("n") == 16000


async def test_async_memory_backend_shares_a_store() -> None:
    store = MemoryBackend()
    backend = AsyncMemoryBackend(store)
    assert await backend.transact("k", _incr) == 1
    assert store.get("k") == 1
    assert await backend.get("k") == 1
    assert await backend.delete("k") is True


def test_an_entry_list_that_leaves_the_table_reads_as_expired_for_ever() -> None:
    # The contract of entry_table() that lets a hot path keep entry lists across calls.
    clock = ManualClock()
    backend = MemoryBackend()
    table = backend.entry_table()
    backend.transact("k", _incr, ttl=10, clock=clock)
    first = table["k"]
    backend.transact("k", _incr, ttl=10, clock=clock)  # replaced: a new list
    second = table["k"]
    assert second is not first
    assert second[1] > clock.monotonic() >= first[1]
    backend.delete("k")
    assert clock.monotonic() >= second[1]
    backend.transact("k", _incr, ttl=1, clock=clock)
    third = table["k"]
    backend.transact("k", lambda old: (old, None))  # deleted by its writer
    assert clock.monotonic() >= third[1]
    assert "k" not in table
    # Expired, then read, swept, or written again.
    for expire in (backend.get, lambda key: len(backend), lambda key: backend.transact(key, _incr)):
        backend.transact("k", _incr, ttl=1, clock=clock)
        entry = table["k"]
        clock.advance(1)
        expire("k")
        assert table.get("k") is not entry
        assert entry[1] == float("-inf")
        assert entry[0] is None


def test_the_backend_lock_is_reentrant_and_excludes_other_threads() -> None:
    backend = MemoryBackend()
    lock = backend.lock
    entered = threading.Event()
    released = threading.Event()
    seen: list[int | None] = []

    def other() -> None:
        entered.wait()
        # The token is out (held through `with` by the main thread): a hot path finds it gone.
        with pytest.raises(IndexError):
            lock.take()
        with lock:  # blocks until the main thread leaves its outermost block
            seen.append(backend.get("k"))
        released.set()

    thread = threading.Thread(target=other)
    thread.start()
    with lock:
        with lock:  # re-entered: a nested transact runs under the same hold
            backend.transact("k", _incr)
        entered.set()
        assert not released.wait(0.05)  # still held after the inner block
        backend.transact("k", _incr)
    thread.join()
    assert seen == [2]  # the other thread ran only after both writes
    with pytest.raises(RuntimeError, match="does not hold"):
        lock.release()


def test_an_interrupt_as_the_token_is_taken_leaves_the_lock_free() -> None:
    backend = MemoryBackend()
    lock = backend.lock
    lock.take = InterruptedTake(lock.take)
    with pytest.raises(KeyboardInterrupt), lock:
        pass  # never entered
    with lock:  # free again, and a with-block works
        backend.transact("k", _incr)
    assert backend.get("k") == 1
