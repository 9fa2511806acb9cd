"""Idle lock znodes are deleted safely, and locks made from a URL close their own client."""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from typing import Any

import pytest
from kazoo.client import KazooState

from dsprims import (
    AsyncFencedStore,
    BackendUnavailable,
    ConfigurationError,
    FencedStore,
    LockLost,
)
from dsprims.backends.zookeeper import ZooKeeperBackend
from dsprims.locks.zookeeper import AsyncZooKeeperLock, ZooKeeperLock
from dsprims.testing.servers import ZooKeeperServerProcess

from .conftest import MakeBackend, children, wait_until

pytestmark = pytest.mark.zookeeper


def exists(backend: ZooKeeperBackend, path: str) -> bool:
    return backend.request("exists", path) is not None


# -- idle lock znodes ----------------------------------------------------------------------------


def test_distinct_names_leave_no_znodes_behind(
    zookeeper_backend: ZooKeeperBackend, key_prefix: str
) -> None:
    names = [f"order-{i}" for i in range(25)] + ["{weird}\n", "../x", "a/b"]
    for name in names:
        lock = ZooKeeperLock(name, backend=zookeeper_backend, prefix=key_prefix, cleanup_delay=0)
        lease = lock.acquire(timeout=5)
        assert exists(zookeeper_backend, lock.path)
        lease.release()
    # Requests of one session run in order: the deletes were sent before this listing.
    assert wait_until(lambda: children(zookeeper_backend, f"/{key_prefix}") == [])


def test_default_delay_keeps_a_hot_lock_znode_and_deletes_it_when_idle(
    make_backend: MakeBackend, key_prefix: str
) -> None:
    backend = make_backend()
    lock = ZooKeeperLock("hot", backend=backend, prefix=key_prefix)
    assert lock.cleanup_delay == 1.0
    first = lock.acquire(timeout=5)
    first.release()
    second = lock.acquire(timeout=5)  # whether or not the znode went meanwhile
    second.release()
    assert second.token > first.token
    assert wait_until(lambda: not exists(backend, lock.path), 15)
    assert lock._session.idle() == set()


def test_reuse_within_the_delay_cancels_the_deletion_and_close_flushes(
    make_backend: MakeBackend, key_prefix: str
) -> None:
    backend = make_backend()
    lock = ZooKeeperLock("slow", backend=backend, prefix=key_prefix, cleanup_delay=60)
    lock.acquire(timeout=5).release()
    assert lock._session.idle() == {lock.path}
    lease = lock.acquire(timeout=5)  # in use again: no deletion pending
    assert lock._session.idle() == set()
    lease.release()
    assert exists(backend, lock.path)
    lock.close()  # a passed-in backend: only this lock's idle znode is deleted, at once
    assert not exists(backend, lock.path)
    assert backend.client.state == KazooState.CONNECTED


def test_none_keeps_the_lock_znode(zookeeper_backend: ZooKeeperBackend, key_prefix: str) -> None:
    lock = ZooKeeperLock("kept", backend=zookeeper_backend, prefix=key_prefix, cleanup_delay=None)
    lock.acquire(timeout=5).release()
    lock.close()
    assert exists(zookeeper_backend, lock.path)


def test_a_waiter_keeps_the_lock_znode_alive(make_backend: MakeBackend, key_prefix: str) -> None:
    one, two = make_backend(), make_backend()
    holder = ZooKeeperLock("busy", backend=one, prefix=key_prefix, cleanup_delay=0)
    waiter = ZooKeeperLock("busy", backend=two, prefix=key_prefix, cleanup_delay=0)
    lease = holder.acquire(timeout=5)
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append(waiter.acquire(timeout=30)))
    thread.start()
    assert wait_until(lambda: len(children(one, holder.path)) == 2)
    lease.release()  # the holder's delete of the lock znode fails (NotEmpty): a waiter is in it
    thread.join(30)
    assert got
    assert not got[0].lost
    got[0].check()
    assert got[0].token > lease.token
    assert exists(one, holder.path)
    got[0].release()
    assert wait_until(lambda: not exists(one, holder.path))


def test_tokens_keep_increasing_across_the_deletion_of_the_lock_znode(
    zookeeper_backend: ZooKeeperBackend, key_prefix: str
) -> None:
    lock = ZooKeeperLock("again", backend=zookeeper_backend, prefix=key_prefix, cleanup_delay=0)
    tokens = []
    for _ in range(4):
        lease = lock.acquire(timeout=5)
        # A fresh lock znode each time: the sequence suffix restarts at 0, the token does not.
        assert lease.owner.endswith("0000000000")
        _data, stat = zookeeper_backend.request("get", lease.owner)
        assert lease.token == stat.czxid
        tokens.append(lease.token)
        lease.release()
        assert wait_until(lambda: not exists(zookeeper_backend, lock.path))
    assert tokens == sorted(set(tokens))


def test_contenders_racing_the_cleanup_keep_exclusion_and_increasing_tokens(
    make_backend: MakeBackend, key_prefix: str
) -> None:
    """Four sessions lock one name in rounds with immediate cleanup: the last releaser of each
    round deletes the lock znode while the next round's contenders are already enrolling."""
    backends = [make_backend() for _ in range(4)]
    rounds = 20
    inside = 0
    grants: list[int] = []
    incarnations: set[int] = set()
    errors: list[BaseException] = []
    guard = threading.Lock()
    barrier = threading.Barrier(len(backends), timeout=60)

    def worker(backend: ZooKeeperBackend, seed: int) -> None:
        nonlocal inside
        rng = random.Random(seed)
        lock = ZooKeeperLock("race", backend=backend, prefix=key_prefix, cleanup_delay=0)
        try:
            for _ in range(rounds):
                barrier.wait()
                time.sleep(rng.uniform(0, 0.004))  # vary who races whom
                with lock as lease:
                    with guard:
                        inside += 1
                        assert inside == 1, "two holders at once"
                        assert not grants or lease.token > grants[-1]
                        grants.append(lease.token)
                    incarnations.add(backend.request("exists", lock.path).czxid)
                    with guard:
                        inside -= 1
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(b, i)) for i, b in enumerate(backends)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert len(grants) == rounds * len(backends)
    assert len(incarnations) > 1  # the lock znode really was deleted and re-created meanwhile
    assert wait_until(lambda: children(backends[0], f"/{key_prefix}") == [])


async def test_async_lock_cleans_up_after_cancellations(
    zookeeper_backend: ZooKeeperBackend, key_prefix: str
) -> None:
    holder = AsyncZooKeeperLock("c", backend=zookeeper_backend, prefix=key_prefix, cleanup_delay=0)
    lock = AsyncZooKeeperLock("c", backend=zookeeper_backend, prefix=key_prefix, cleanup_delay=0)
    held = await holder.acquire()
    for _ in range(10):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(lock.acquire(), 0.01)
    assert await lock.try_acquire() is None
    await held.release()
    assert await asyncio.to_thread(
        wait_until, lambda: children(zookeeper_backend, f"/{key_prefix}") == []
    )
    lease = await lock.acquire(timeout=5)
    assert lease.token > held.token
    await lease.release()


def test_bad_cleanup_delay(zookeeper_backend: ZooKeeperBackend) -> None:
    for bad in (-1, math.nan, math.inf):
        with pytest.raises(ConfigurationError, match="cleanup_delay"):
            ZooKeeperLock("x", backend=zookeeper_backend, cleanup_delay=bad)
    for wrong in ("1", True):
        with pytest.raises(TypeError, match="cleanup_delay"):
            ZooKeeperLock("x", backend=zookeeper_backend, cleanup_delay=wrong)  # type: ignore[arg-type]


# -- close(): URL-made clients are ours to close, passed-in ones never ---------------------------


def test_a_lock_made_from_a_url_closes_its_client(
    zookeeper_server: ZooKeeperServerProcess, key_prefix: str
) -> None:
    lost = threading.Event()
    lock = ZooKeeperLock(
        "u",
        backend=f"{zookeeper_server.url}?session_timeout=4",
        prefix=key_prefix,
        on_lost=lambda _lease: lost.set(),
    )
    assert lock.owns_backend
    client = lock.backend.client
    lock.acquire(timeout=5).release()
    lease = lock.acquire(timeout=5)
    watcher = zookeeper_server.client()
    try:
        lock.close()
        assert wait_until(lambda: not client.connected, 5)
        assert lost.wait(10)  # the session ended with the client: the lease is lost
        with pytest.raises(LockLost):
            lease.release()
        with pytest.raises(BackendUnavailable):
            lock.acquire(timeout=1)
        lock.close()  # idempotent
        # The session's nodes went with it, and the idle lock znode was deleted.
        assert wait_until(lambda: watcher.exists(lock.path) is None)
    finally:
        watcher.stop()
        watcher.close()


def test_a_passed_in_backend_is_never_closed(
    zookeeper_backend: ZooKeeperBackend, key_prefix: str
) -> None:
    lock = ZooKeeperLock("p", backend=zookeeper_backend, prefix=key_prefix)
    assert not lock.owns_backend
    lease = lock.acquire(timeout=5)
    lock.close()
    assert zookeeper_backend.client.connected
    assert not lease.lost
    lease.release()
    ZooKeeperLock("p", backend=zookeeper_backend, prefix=key_prefix).acquire(timeout=5).release()


def test_a_url_of_another_kind_is_refused(key_prefix: str) -> None:
    with pytest.raises(ConfigurationError, match="zookeeper"):
        ZooKeeperLock("x", backend="memory://", prefix=key_prefix)
    with pytest.raises(ConfigurationError, match="cleanup_delay"):
        # Validation runs before a client is made from the URL: nothing to leak.
        ZooKeeperLock("x", backend="zookeeper://127.0.0.1:1", cleanup_delay=-1)


async def test_async_lock_made_from_a_url_closes_its_client(
    zookeeper_server: ZooKeeperServerProcess, zookeeper_backend: ZooKeeperBackend, key_prefix: str
) -> None:
    lock = AsyncZooKeeperLock("a", backend=zookeeper_server.url, prefix=key_prefix)
    assert lock.owns_backend
    client = lock.backend.client
    lease = await lock.acquire(timeout=5)
    await lease.release()
    await lock.aclose()
    assert wait_until(lambda: not client.connected, 5)  # kazoo < 2.11 flips it from its thread
    assert not exists(zookeeper_backend, lock.path)  # flushed at close
    passed = AsyncZooKeeperLock("a", backend=zookeeper_backend, prefix=key_prefix)
    await passed.aclose()
    assert zookeeper_backend.client.connected


def test_fenced_store_made_from_a_url_closes_its_client(
    zookeeper_server: ZooKeeperServerProcess, zookeeper_backend: ZooKeeperBackend, key_prefix: str
) -> None:
    with FencedStore("f", backend=zookeeper_server.url, prefix=key_prefix) as store:
        assert store.owns_backend
        store.write("k", "v", 3)
        client = store.backend.client
    assert wait_until(lambda: not client.connected, 5)
    store.close()  # idempotent
    passed = FencedStore("f", backend=zookeeper_backend, prefix=key_prefix)
    assert not passed.owns_backend
    passed.close()
    assert zookeeper_backend.client.connected
    assert passed.read("k") == "v"


@pytest.mark.redis
async def test_async_fenced_store_made_from_a_url_closes_its_client(
    redis_server: Any, key_prefix: str
) -> None:
    closed: list[bool] = []
    async with AsyncFencedStore("f", backend=redis_server.url, prefix=key_prefix) as store:
        assert store.owns_backend
        await store.write("k", b"v", 3)
        real = store.backend.aclose

        async def spy() -> None:
            closed.append(True)
            await real()

        store.backend.aclose = spy
    assert closed == [True]
    await store.aclose()  # idempotent
    assert closed == [True]
    passed = AsyncFencedStore("f", backend=store.backend, prefix=key_prefix)
    assert not passed.owns_backend
    await passed.aclose()
    assert closed == [True]


def test_an_abandoned_enrollment_is_found_by_its_contender_path() -> None:
    from kazoo.exceptions import NodeExistsError, RolledBackError
    from kazoo.protocol.states import ZnodeStat

    from dsprims.locks.zookeeper import _created_path

    stat = ZnodeStat(*range(11))
    assert _created_path(["/p/l/o-lock-0000000001", stat]) == "/p/l/o-lock-0000000001"
    # A multi that re-created the lock znode: the contender node is the last path, not the first.
    assert _created_path(["/p/l", "/p/l/o-lock-0000000000", stat]) == "/p/l/o-lock-0000000000"
    assert _created_path([NodeExistsError(), RolledBackError(), RolledBackError()]) is None
    assert _created_path("/p/l/o-lock-0000000002") == "/p/l/o-lock-0000000002"
    assert _created_path(None) is None


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_release_of_a_lease_whose_node_vanished_raises_lock_lost(
    zookeeper_backend: ZooKeeperBackend, key_prefix: str, asynchronous: bool
) -> None:
    if asynchronous:
        alock = AsyncZooKeeperLock("gone", backend=zookeeper_backend, prefix=key_prefix)
        alease = await alock.acquire(timeout=5)
        zookeeper_backend.request("delete", alease.owner)  # an operator deleted it by hand
        with pytest.raises(LockLost):
            await alease.release()
        assert alease.lost
    else:
        lock = ZooKeeperLock("gone", backend=zookeeper_backend, prefix=key_prefix)
        lease = lock.acquire(timeout=5)
        zookeeper_backend.request("delete", lease.owner)
        with pytest.raises(LockLost):
            lease.release()
        assert lease.lost


def test_a_collected_lease_finalizer_never_takes_the_session_lock(
    zookeeper_backend: ZooKeeperBackend, key_prefix: str
) -> None:
    lock = ZooKeeperLock("gc", backend=zookeeper_backend, prefix=key_prefix, cleanup_delay=0)
    lease = lock.acquire(timeout=5)
    node = lease.owner
    session = lock._session
    # Cyclic garbage collection can run a finalizer inside any of the session's locked blocks;
    # the finalizer must only queue its work (taking the lock here would hang this thread).
    with session._lock:
        del lease
    assert wait_until(lambda: not exists(zookeeper_backend, node))  # freed by the heartbeat
    assert wait_until(lambda: not exists(zookeeper_backend, lock.path))
    assert lock.pending_cleanups() == 0


def test_the_client_that_deleted_the_lock_znode_recreates_it_in_one_round_trip(
    zookeeper_backend: ZooKeeperBackend, key_prefix: str
) -> None:
    lock = ZooKeeperLock("cron", backend=zookeeper_backend, prefix=key_prefix, cleanup_delay=0)
    client = zookeeper_backend.client
    multis: list[int] = []
    real = client.transaction

    def counting() -> Any:
        multis.append(1)
        return real()

    client.transaction = counting
    try:
        first = lock.acquire(timeout=5)
        first.release()
        assert wait_until(lambda: not exists(zookeeper_backend, lock.path))
        assert wait_until(lambda: lock.path in lock._session._gone)
        multis.clear()
        second = lock.acquire(timeout=5)  # knows the znode is gone: one multi re-creates it
        assert len(multis) == 1
        assert second.token > first.token
        second.release()
        assert wait_until(lambda: not exists(zookeeper_backend, lock.path))
        # Someone else re-creates it meanwhile: the hint is wrong, the acquire still works.
        other = ZooKeeperLock("cron", backend=zookeeper_backend, prefix=key_prefix)
        assert wait_until(lambda: lock.path in lock._session._gone)
        zookeeper_backend.request("create", lock.path, b"")
        multis.clear()
        third = lock.acquire(timeout=5)
        assert len(multis) == 2  # NodeExists, then a plain enrollment
        assert third.token > second.token
        third.release()
        other.close()
    finally:
        client.transaction = real
