"""RedisLock / AsyncRedisLock on a real server and Cluster, with the memory lock as reference."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from dsprims import (
    ConfigurationError,
    LockLost,
    LockNotAcquired,
    ManualClock,
    MemoryBackend,
    async_backend_from_url,
)
from dsprims.locks import AsyncRedisLock, Lease, MemoryLock, RedisLock
from dsprims.locks._lock import LockBase
from dsprims.locks.core import waiter_ttl_us
from tests.locks import IDLE_FIELDS, hand_over

pytestmark = pytest.mark.redis

HOSTILE = ["{", "}", "a}b{c", "line\nbreak", "x" * 1000, "*", "dsprims:{other}:lock", "键🔑"]


def _lock(backend: Any, name: str, prefix: str, **kw: Any) -> LockBase:
    if isinstance(backend, MemoryBackend):
        return MemoryLock(name, backend=backend, prefix=prefix, **kw)
    return RedisLock(name, backend=backend, prefix=prefix, **kw)


def test_conformance_basic_cycle(backend: Any, key_prefix: str) -> None:
    lock = _lock(backend, "basic", key_prefix)
    first = lock.acquire()
    assert lock.try_acquire() is None
    with pytest.raises(LockNotAcquired):
        lock.acquire(timeout=0.05)
    first.release()
    second = lock.acquire(timeout=1)
    assert second.token > first.token
    second.extend(20)
    second.release()
    with pytest.raises(LockLost):
        # A release that the store refuses means the lease was not held: LockLost.
        Lease(
            "basic",
            1,
            owner="forged-owner",
            driver=lock,
            clock=lock.clock,
            ttl=10,
        ).release()


def test_hostile_names_stay_namespaced(backend: Any, key_prefix: str) -> None:
    leases = [_lock(backend, name, key_prefix).acquire(timeout=1) for name in HOSTILE]
    assert len({lease.name for lease in leases}) == len(HOSTILE)
    for lease in leases:
        lease.release()
    if not isinstance(backend, MemoryBackend):
        keys = list(backend.client.scan_iter(match=f"{key_prefix}*"))
        assert len(keys) == len(HOSTILE)
        assert all(k.startswith(f"{key_prefix}:{{".encode()) for k in keys)
        assert all(sorted(backend.client.hkeys(k)) == IDLE_FIELDS for k in keys)


def test_a_non_owner_cannot_release_or_extend(redis_backend: Any, key_prefix: str) -> None:
    lock = RedisLock("owned", backend=redis_backend, prefix=key_prefix, auto_renew=False)
    lease = lock.acquire()
    store = lock._store
    assert not store.release("not-the-owner")
    assert not store.extend("not-the-owner", 100)
    assert lock.try_acquire() is None
    lease.release()


def test_extend_never_recreates_an_expired_lock(redis_backend: Any, key_prefix: str) -> None:
    lock = RedisLock("gone", backend=redis_backend, prefix=key_prefix, auto_renew=False)
    lease = lock.acquire()
    redis_backend.client.delete(f"{key_prefix}:{{gone}}:lock")
    with pytest.raises(LockLost):
        lease.extend()
    assert redis_backend.client.exists(f"{key_prefix}:{{gone}}:lock") == 0


def test_waiters_are_woken_in_fifo_order(redis_backend: Any, key_prefix: str) -> None:
    lock = RedisLock("fifo", backend=redis_backend, prefix=key_prefix)
    holder = lock.acquire()
    order: list[int] = []
    threads = []
    for i in range(4):

        def wait(i: int = i) -> None:
            with lock.acquire(timeout=20):
                order.append(i)

        t = threading.Thread(target=wait)
        t.start()
        threads.append(t)
        deadline = time.monotonic() + 5
        while redis_backend.client.zcard(f"{key_prefix}:{{fifo}}:q") < i + 1:
            assert time.monotonic() < deadline
            time.sleep(0.005)
    holder.release()
    for t in threads:
        t.join()
    assert order == [0, 1, 2, 3]


def test_a_crashed_holder_is_noticed_right_after_its_lease(
    redis_backend: Any, key_prefix: str
) -> None:
    crashed = RedisLock("crash", backend=redis_backend, prefix=key_prefix, ttl=0.3)
    crashed.acquire()
    crashed._store.extend = lambda owner, ttl: False  # type: ignore[method-assign]
    waiter = RedisLock("crash", backend=redis_backend, prefix=key_prefix)
    start = time.monotonic()
    lease = waiter.acquire(timeout=10)
    # Generous correctness bound: TTL + well under the 2 s wait slice.
    assert time.monotonic() - start < 0.3 + 1.0
    lease.release()


def test_unfair_lock_lets_a_newcomer_barge(redis_backend: Any, key_prefix: str) -> None:
    fair = RedisLock("barge", backend=redis_backend, prefix=key_prefix, auto_renew=False)
    unfair = RedisLock(
        "barge", backend=redis_backend, prefix=key_prefix, fair=False, auto_renew=False
    )
    holder = fair.acquire()
    # Queued by hand by an unfair waiter: a release only wakes it (no hand-off).
    store = unfair._store
    assert not store.attempt("waiter-owner", "waiter-ticket").granted
    holder.release()
    assert fair.try_acquire() is None  # promised to the queued waiter
    barged = unfair.try_acquire()
    assert barged is not None
    barged.release()
    store.leave("waiter-owner", "waiter-ticket")
    assert fair.try_acquire() is not None


def test_release_hands_the_lock_to_a_fair_head(redis_backend: Any, key_prefix: str) -> None:
    lock = RedisLock("handoff", backend=redis_backend, prefix=key_prefix, auto_renew=False)
    holder = lock.acquire()
    store = lock._store
    assert not store.attempt("waiter-owner", "waiter-ticket").granted  # queued by hand
    assert not store.attempt("next-owner", "next-ticket").granted
    holder.release()
    # The head holds the lock already: its wake-up carries the token, nobody else gets it.
    assert lock.try_acquire() is None
    handed = store.wait("waiter-ticket", 1.0)
    assert handed is not None
    assert handed.token > holder.token
    # The lease is cut to what was left of the waiter's queue entry (and never above ttl).
    assert 0 < handed.lease_us <= min(lock.params.ttl_us, waiter_ttl_us(store.wait_slice))
    assert not store.release("next-owner")
    assert store.extend("waiter-owner", 5.0)
    # Asking again (a lost reply) is idempotent: the same grant.
    assert store.attempt("waiter-owner", "waiter-ticket").token == handed.token
    assert store.release("waiter-owner")
    second = store.wait("next-ticket", 1.0)  # handed on to the next in line
    assert second is not None
    assert second.token > handed.token
    assert store.release("next-owner")
    keys = sorted(redis_backend.client.scan_iter(match=f"{key_prefix}*"))
    assert len(keys) == 1
    assert sorted(redis_backend.client.hkeys(keys[0])) == IDLE_FIELDS


def test_a_waiter_that_died_in_the_queue_holds_a_hand_off_only_as_long_as_its_entry(
    redis_server: Any, key_prefix: str
) -> None:
    from dsprims import backend_from_url

    backend = backend_from_url(redis_server.url, timeout=1.0)
    # Queue entries live 2 x 0.2 + 1 = 1.4 s without a refresh; the lease would be 10 s.
    lock = RedisLock("ghost", backend=backend, prefix=key_prefix, wait_slice=0.2)
    holder = lock.acquire()
    assert not lock._store.attempt("ghost-owner", "ghost-ticket").granted  # then it dies
    released = time.monotonic()
    holder.release()  # handed to the ghost
    assert lock.try_acquire() is None
    lease = lock.acquire(timeout=1.4 + 1.0)
    # Generous correctness bound: the entry's 1.4 s (not the 10 s ttl) plus scheduling.
    assert time.monotonic() - released < 1.4 + 1.0
    assert lease.token > holder.token
    lease.release()
    backend.close()


def test_pinned_clock_is_deterministic(redis_backend: Any, key_prefix: str) -> None:
    clock = ManualClock(start=5000.0)
    lock = RedisLock("pinned", backend=redis_backend, prefix=key_prefix, clock=clock, ttl=5)
    lease = lock.acquire()
    assert lease.token == 5_000_000_000  # the pinned clock's µs floor
    start = clock.monotonic()
    with pytest.raises(LockNotAcquired):
        lock.acquire(timeout=3)
    assert clock.monotonic() - start == pytest.approx(3.0, abs=0.01)
    second = lock.acquire(timeout=10)  # waits (on the pinned clock) for the lease to end
    assert second.token > lease.token
    assert lease.lost
    # Real time passing does not expire state the pinned clock still needs.
    assert redis_backend.client.pttl(f"{key_prefix}:{{pinned}}:lock") > 86_000_000


def test_counter_fencing_mode(redis_backend: Any, key_prefix: str) -> None:
    lock = RedisLock("ctr", backend=redis_backend, prefix=key_prefix, fencing="counter")
    tokens = []
    for _ in range(3):
        lease = lock.acquire()
        tokens.append(lease.token)
        lease.release()
    assert tokens == [1, 2, 3]


def test_configuration_errors(redis_backend: Any) -> None:
    with pytest.raises(ConfigurationError, match="ttl"):
        RedisLock("x", backend=redis_backend, ttl=-1)
    with pytest.raises(ConfigurationError, match="name"):
        RedisLock("", backend=redis_backend)
    with pytest.raises(ConfigurationError, match="Redis backend"):
        RedisLock("x", backend=MemoryBackend())
    with pytest.raises(ConfigurationError, match="wait_slice"):
        RedisLock("x", backend=redis_backend, wait_slice=5.0)  # socket timeout is 1 s


def test_cluster_lock_with_queue(redis_cluster_backend: Any, key_prefix: str) -> None:
    lock = RedisLock("c{1}", backend=redis_cluster_backend, prefix=key_prefix)
    holder = lock.acquire()
    result: list[Lease] = []
    t = threading.Thread(target=lambda: result.append(lock.acquire(timeout=10)))
    t.start()
    time.sleep(0.05)
    holder.release()
    t.join()
    assert result[0].token > holder.token
    result[0].release()


async def test_async_redis_lock_cycle_and_timeout(redis_server: Any, key_prefix: str) -> None:
    backend = async_backend_from_url(redis_server.url)
    try:
        lock = AsyncRedisLock("a", backend=backend, prefix=key_prefix)
        async with await lock.acquire() as lease:
            assert await lock.try_acquire() is None
            with pytest.raises(LockNotAcquired):
                await lock.acquire(timeout=0.05)
        async with lock as second:
            assert second.token > lease.token
        await lock.settle()
        keys = [k async for k in backend.client.scan_iter(match=f"{key_prefix}*")]
        assert keys == [f"{key_prefix}:{{a}}:lock".encode()]
        assert sorted(await backend.client.hkeys(keys[0])) == IDLE_FIELDS
    finally:
        await backend.aclose()


@pytest.mark.slow
def test_wait_replicas(redis_server: Any, key_prefix: str, tmp_path: Any) -> None:
    from dsprims import BackendUnavailable, backend_from_url
    from dsprims.testing.servers import RedisServerProcess

    backend = backend_from_url(redis_server.url)
    unreplicated = RedisLock(
        "w", backend=backend, prefix=key_prefix, wait_replicas=1, wait_timeout=0.05
    )
    with pytest.raises(BackendUnavailable, match="replica"):
        unreplicated.acquire(timeout=1)
    plain = RedisLock("w", backend=backend, prefix=key_prefix)
    lease = plain.try_acquire()  # the unacknowledged grant was taken back
    assert lease is not None
    lease.release()
    with pytest.raises(ConfigurationError, match="wait_replicas"):
        RedisLock("w", backend=backend, wait_replicas=-1)

    replica = RedisServerProcess.create(
        tmp_path, extra_args=("--replicaof", "127.0.0.1", str(redis_server.port))
    )
    replica.start()
    try:
        deadline = time.monotonic() + 20
        watcher = replica.client()
        while watcher.info("replication").get("master_link_status") != "up":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        watcher.close()
        durable = RedisLock(
            "w",
            backend=backend,
            prefix=key_prefix,
            wait_replicas=1,
            wait_timeout=0.9,  # generous: the machine is shared (below the 1 s socket timeout)
            fencing="counter",
        )
        admin = redis_server.client()
        admin.script_flush()  # the pipelined grant reloads its script
        admin.close()
        first = durable.acquire(timeout=5)
        first.release()
        second = durable.acquire(timeout=5)
        assert second.token > first.token
        # No hand-off with wait_replicas: a release wakes the next waiter, whose own grant is
        # pipelined with WAIT.
        store = durable._store
        assert not store.attempt("waiter", "ticket").granted
        second.release()
        assert store.wait("ticket", 1.0) is None
        assert store.attempt("waiter", "ticket").granted
        assert store.release("waiter")
    finally:
        replica.stop()
        backend.close()


def test_watchdog_keeps_a_redis_lease_alive(redis_backend: Any, key_prefix: str) -> None:
    lock = RedisLock("renewed", backend=redis_backend, prefix=key_prefix, ttl=0.4)
    lease = lock.acquire()
    time.sleep(1.2)  # three leases long: only renewals keep it
    assert not lease.lost
    assert lock.try_acquire() is None
    lease.release()
    assert lock.try_acquire() is not None


def test_an_outage_raises_within_the_timeout_and_leaves_nothing(
    redis_server: Any, key_prefix: str
) -> None:
    from dsprims import BackendUnavailable, backend_from_url

    backend = backend_from_url(redis_server.url, timeout=0.5)
    lock = RedisLock("outage", backend=backend, prefix=key_prefix)
    holder = lock.acquire()
    with redis_server.frozen_for_a_while():
        start = time.monotonic()
        with pytest.raises(BackendUnavailable):
            lock.acquire(timeout=5)
        assert time.monotonic() - start < 0.5 * 3 + 1.0
    released = time.monotonic()
    holder.release()
    # A queue entry whose command reached the frozen server may land after the clean-up did;
    # it expires by itself within 2 x wait_slice + 1 s (here 1.5 s), and if the release handed
    # the lock to that ghost, its lease was cut to what was left of the entry: the lock is free
    # again within the same bound, and the queue is gone.
    client = redis_server.client()
    lease = lock.acquire(timeout=1.5 + 1.0)
    assert time.monotonic() - released < 1.5 + 1.0
    assert not client.exists(f"{key_prefix}:{{outage}}:q", f"{key_prefix}:{{outage}}:qo")
    lease.release()
    client.close()
    backend.close()


async def test_async_lock_on_a_cluster(redis_cluster: Any, key_prefix: str) -> None:
    backend = async_backend_from_url(redis_cluster.url)
    try:
        lock = AsyncRedisLock("ac{x}", backend=backend, prefix=key_prefix)
        await hand_over(lock, wait=10)
    finally:
        await backend.aclose()


def test_a_stale_hand_off_is_never_taken_for_a_new_grant(backend: Any, key_prefix: str) -> None:
    # W is handed the lock but misses the message; its grant ends; B takes the lock; W asks
    # again and queues. The old message must not reach W's next wait: it would make W believe
    # it holds the lock that B holds.
    clock = ManualClock(start=2000.0)
    lock = _lock(backend, "stale", key_prefix, clock=clock, ttl=1.0, auto_renew=False)
    store: Any = lock._store
    store.open_ticket("w-ticket")
    holder = lock.acquire()
    assert not store.attempt("w-owner", "w-ticket").granted
    holder.release()  # handed to W, which does not read its wake-up channel
    clock.advance(1.5)  # W's handed lease ends
    other = lock.try_acquire()
    assert other is not None
    assert not store.attempt("w-owner", "w-ticket").granted  # queued again behind B
    assert store.wait("w-ticket", 0.0) is None
    other.release()
    handed = store.wait("w-ticket", 0.0)  # the new hand-off, made after W's last attempt
    assert handed is not None
    assert handed.token > other.token
    store.close_ticket("w-ticket")
