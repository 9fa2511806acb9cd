"""The Redis lock's hot path: pre-packed commands on ready connections, the waiters mark and the
expiry stamp of the lock hash (what lets the uncontended cycle skip the queue and PEXPIRE)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import pytest
import redis

from dsprims import BackendUnavailable, RedisBackend, async_backend_from_url, backend_from_url
from dsprims.locks import AsyncRedisLock, RedisLock, _direct
from dsprims.locks.core import FENCE_TTL
from tests.locks import IDLE_FIELDS

pytestmark = pytest.mark.redis


def test_direct_path_only_where_it_is_equivalent(redis_server: Any, key_prefix: str) -> None:
    url_made = backend_from_url(redis_server.url)
    assert RedisLock("a", backend=url_made, prefix=key_prefix)._store._direct is not None  # type: ignore[attr-defined]

    single = redis_server.client(single_connection_client=True)

    class Instrumented(redis.Redis):
        def execute_command(self, *args: Any, **options: Any) -> Any:
            return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]

    wrapped = Instrumented(port=redis_server.port)
    patched = redis_server.client()
    calls: list[object] = []
    original = patched.execute_command

    def counted(*args: Any, **options: Any) -> Any:
        calls.append(args[0])
        return original(*args, **options)

    patched.execute_command = counted
    for client in (single, wrapped, patched):
        lock = RedisLock("a", backend=RedisBackend(client), prefix=key_prefix)
        assert lock._store._direct is None  # type: ignore[attr-defined]
        lease = lock.acquire(timeout=1)  # the ordinary path still works
        lease.release()
        client.close()
    assert len(calls) == 2  # the instance's own execute_command saw both scripts
    url_made.close()


def test_held_connections_are_shared_bounded_and_closed_with_the_client(
    redis_server: Any, key_prefix: str
) -> None:
    backend = backend_from_url(redis_server.url)
    pool = backend.client.connection_pool
    locks = [RedisLock(f"n{i}", backend=backend, prefix=key_prefix) for i in range(10)]
    tokens = []
    for lock in locks * 3:
        lease = lock.acquire(timeout=1)
        tokens.append(lease.token)
        lease.release()
    assert len(set(tokens)) == len(tokens)
    idle = _direct.stack_of(pool)
    assert 1 <= len(idle) <= _direct.IDLE_PER_POOL
    # The kept connections are the pool's (in use), and nothing else is held.
    assert set(idle) == set(pool._in_use_connections)
    backend.close()  # the backend made the client: closing it disconnects the kept ones too
    assert all(conn._sock is None for conn in idle)
    # redis-py reconnects a closed client's connections on use; so does the hot path.
    locks[0].acquire(timeout=1).release()
    pool.disconnect()


def test_a_late_reply_is_never_read_by_the_next_call(redis_server: Any, key_prefix: str) -> None:
    backend = backend_from_url(redis_server.url, timeout=0.3)
    lock = RedisLock("late", backend=backend, prefix=key_prefix, auto_renew=False)
    # One cycle first, so the server has both scripts cached: on a fresh server (this test run
    # alone) the frozen release would otherwise answer NOSCRIPT when it thaws and free nothing.
    lock.acquire().release()
    holder = lock.acquire()
    with redis_server.frozen_for_a_while(), pytest.raises(BackendUnavailable):
        holder.release()
    # The release ran when the server thawed; its reply (1) must not answer the next command.
    deadline = time.monotonic() + 5
    while True:
        lease = lock.try_acquire()
        if lease is not None:
            break
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert lease.token > holder.token
    lease.release()
    assert lease.released
    backend.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_never_uses_the_parents_connections(
    redis_server: Any, key_prefix: str
) -> None:
    backend = backend_from_url(redis_server.url)
    lock = RedisLock("fork", backend=backend, prefix=key_prefix, auto_renew=False)
    lock.acquire().release()
    parent_conns = list(_direct.stack_of(backend.client.connection_pool))
    assert parent_conns
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        code = 1
        try:
            kept = _direct.stack_of(backend.client.connection_pool)
            if not kept:
                lock.acquire(timeout=2).release()
                fresh = _direct.stack_of(backend.client.connection_pool)
                code = 0 if all(c not in parent_conns for c in fresh) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    lock.acquire(timeout=2).release()  # the parent's connections still work
    backend.close()


def _fields(client: Any, key: str) -> set[bytes]:
    return set(client.hkeys(key))


def test_waiters_mark_is_set_while_anyone_queues_and_cleared_after(
    redis_server: Any, key_prefix: str
) -> None:
    backend = backend_from_url(redis_server.url)
    client = redis_server.client()
    key = f"{key_prefix}:{{m}}:lock"
    lock = RedisLock("m", backend=backend, prefix=key_prefix)
    holder = lock.acquire()
    assert _fields(client, key) == {b"o", b"t", b"d", b"f", b"x"}
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(lock.acquire(timeout=10)))
    waiter.start()
    deadline = time.monotonic() + 5
    while not client.exists(f"{key_prefix}:{{m}}:q"):
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert b"w" in _fields(client, key)  # marked before (in the same script as) the queueing
    holder.release()
    waiter.join()
    assert b"w" not in _fields(client, key)  # its grant emptied the queue
    got[0].release()
    assert sorted(client.hkeys(key)) == IDLE_FIELDS
    # A stale mark (the queue expired on its own) is dropped by the next script that looks.
    client.hset(key, "w", "1")
    lease = lock.acquire(timeout=1)
    assert b"w" not in _fields(client, key)
    lease.release()
    assert sorted(client.hkeys(key)) == IDLE_FIELDS
    client.close()
    backend.close()


def test_expiry_stamp_keeps_the_counter_for_the_fence_lifetime(
    redis_server: Any, key_prefix: str
) -> None:
    backend = backend_from_url(redis_server.url)
    client = redis_server.client()
    key = f"{key_prefix}:{{s}}:lock"
    lock = RedisLock("s", backend=backend, prefix=key_prefix, auto_renew=False)
    fence_ms = FENCE_TTL * 1000
    lease = lock.acquire()
    lease.release()
    first_ttl = client.pttl(key)
    assert fence_ms <= first_ttl <= fence_ms * 1.5
    seconds, micros = client.time()
    stamp = int(client.hget(key, "x"))
    # The stamp never overstates the key's own expiry.
    assert stamp <= seconds * 1_000_000 + micros + first_ttl * 1000
    lock.acquire().release()
    assert client.pttl(key) >= fence_ms  # still covered without a re-arm
    assert int(client.hget(key, "x")) == stamp
    # Shorten the key behind the stamp's back and make the stamp say so: the next grant re-arms.
    client.pexpire(key, 5_000)
    client.hset(key, "x", "0")
    lock.acquire().release()
    assert client.pttl(key) >= fence_ms
    assert int(client.hget(key, "x")) > stamp
    client.close()
    backend.close()


async def test_async_hot_path_under_concurrency(redis_server: Any, key_prefix: str) -> None:
    backend = async_backend_from_url(redis_server.url)
    try:
        locks = [AsyncRedisLock(f"c{i}", backend=backend, prefix=key_prefix) for i in range(20)]
        assert all(lock._store._direct is not None for lock in locks)  # type: ignore[attr-defined]

        async def cycle(lock: AsyncRedisLock) -> int:
            lease = await lock.acquire(timeout=2)
            await asyncio.sleep(0)
            await lease.release()
            return lease.token

        tokens = await asyncio.gather(*(cycle(lock) for lock in locks * 2))
        assert len(set(tokens)) == len(tokens)
        pool = backend.client.connection_pool
        idle = _direct.stack_of(pool)
        assert 1 <= len(idle) <= _direct.IDLE_PER_POOL
        assert set(idle) == set(pool._in_use_connections)
        for lock in locks:
            await lock.settle()
    finally:
        await backend.aclose()


async def test_async_late_reply_is_never_read_by_the_next_call(
    redis_server: Any, key_prefix: str
) -> None:
    backend = async_backend_from_url(redis_server.url, timeout=0.3)
    try:
        lock = AsyncRedisLock("alate", backend=backend, prefix=key_prefix, auto_renew=False)
        holder = await lock.acquire()
        with redis_server.frozen_for_a_while(), pytest.raises(BackendUnavailable):
            await holder.release()
        deadline = time.monotonic() + 5
        while (lease := await lock.try_acquire()) is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert lease.token > holder.token
        await lease.release()
        assert lease.released
        await lock.settle()
    finally:
        await backend.aclose()


def _connections(admin: Any, since: int = 0) -> int:
    """Clients of ``admin``'s server whose connection id is at least ``since`` (pass the admin's
    own id: connections of earlier tests, which the server may still be closing, do not count)."""
    return sum(1 for client in admin.client_list() if int(client["id"]) >= since)


def _wait_for_connections(admin: Any, expected: int, since: int = 0) -> None:
    deadline = time.monotonic() + 5
    while _connections(admin, since) != expected:
        assert time.monotonic() < deadline, (_connections(admin, since), expected)
        time.sleep(0.01)


def test_close_closes_only_clients_made_from_urls(
    redis_server: Any, key_prefix: str, tmp_path: Any
) -> None:
    from dsprims import Redlock
    from dsprims.testing.servers import RedisServerProcess

    admin = redis_server.client()
    since = admin.client_id()
    before = _connections(admin, since)
    lock = RedisLock("own", backend=redis_server.url, prefix=key_prefix)
    lock.acquire().release()
    assert _connections(admin, since) > before
    lock.close()
    lock.close()  # idempotent
    _wait_for_connections(admin, before, since)

    passed = backend_from_url(redis_server.url)
    borrowed = RedisLock("own", backend=passed, prefix=key_prefix)
    borrowed.acquire().release()
    borrowed.close()
    assert passed.ping()  # still open: its owner closes it
    borrowed.acquire().release()

    others = [RedisServerProcess.create(tmp_path / f"r{i}") for i in range(2)]
    for server in others:
        server.start()
    try:
        redlock = Redlock("own", backends=[passed, *(s.url for s in others)], prefix=key_prefix)
        redlock.acquire().release()
        clients = [s.client() for s in others]
        assert all(_connections(c) > 1 for c in clients)
        redlock.close()
        for c in clients:
            _wait_for_connections(c, 1)
            c.close()
        assert passed.ping()
    finally:
        for server in others:
            server.stop()
    passed.close()
    _wait_for_connections(admin, before, since)
    admin.close()


async def test_aclose_closes_only_clients_made_from_urls(
    redis_server: Any, key_prefix: str
) -> None:
    from dsprims import AsyncRedlock

    admin = redis_server.client()
    since = admin.client_id()
    before = _connections(admin, since)
    lock = AsyncRedisLock("aown", backend=redis_server.url, prefix=key_prefix)
    await (await lock.acquire()).release()
    assert _connections(admin, since) > before
    await lock.aclose()
    await lock.aclose()
    _wait_for_connections(admin, before, since)

    passed = async_backend_from_url(redis_server.url)
    try:
        borrowed = AsyncRedisLock("aown", backend=passed, prefix=key_prefix)
        await (await borrowed.acquire()).release()
        await borrowed.aclose()
        assert await passed.ping()
        redlock = AsyncRedlock("aown", backends=[redis_server.url], prefix=key_prefix)
        await (await redlock.acquire()).release()
        await redlock.aclose()
        assert await passed.ping()
    finally:
        await passed.aclose()
    _wait_for_connections(admin, before, since)
    admin.close()


def test_small_or_blocking_pools_keep_no_connection(redis_server: Any, key_prefix: str) -> None:
    # A lock must never sit on a connection that the client's other users may be waiting for:
    # with a one-connection blocking pool, the lock and plain commands take turns.
    pools = [
        redis.BlockingConnectionPool(port=redis_server.port, max_connections=1, timeout=2),  # type: ignore[no-untyped-call]
        redis.ConnectionPool(port=redis_server.port, max_connections=2),
    ]
    for pool in pools:
        client = redis.Redis(connection_pool=pool)
        lock = RedisLock("small", backend=RedisBackend(client), prefix=key_prefix)
        assert lock._store._direct is not None  # type: ignore[attr-defined]
        for _ in range(3):
            lease = lock.acquire(timeout=1)
            assert client.ping()  # the only connection is free again
            lease.release()
        assert _direct.stack_of(pool) == []
        client.close()


def _acquire_into(lock: RedisLock, got: list[Any]) -> None:
    got.append(lock.acquire(timeout=5))


def test_hot_path_with_decoded_replies(redis_server: Any, key_prefix: str) -> None:
    # The packed commands and the reply handling work whether the client decodes replies or not,
    # including the queued reply ([wait, ticket]) and the hand-off to the queued waiter (its
    # packed BLPOP, on a key with braces and non-ASCII characters).
    for decode in (True, False):
        client = redis_server.client(decode_responses=decode)
        name = f"dec{decode}-{{键}}🔑"
        lock = RedisLock(name, backend=RedisBackend(client), prefix=key_prefix)
        assert lock._store._direct is not None  # type: ignore[attr-defined]
        holder = lock.acquire()
        got: list[Any] = []
        waiter = threading.Thread(target=_acquire_into, args=(lock, got))
        waiter.start()
        time.sleep(0.05)
        holder.release()
        waiter.join()
        assert got[0].token > holder.token
        got[0].release()
        client.close()


def test_borrowing_works_with_old_and_new_pool_signatures() -> None:
    class OldPool:  # redis-py before 5.3: the command name is required
        def get_connection(self, command_name: str, *keys: Any, **options: Any) -> str:
            return command_name

    class NewPool:  # redis-py 5.3+: no arguments (giving any warns)
        def get_connection(self, command_name: str | None = None) -> str:
            assert command_name is None
            return "new"

    assert _direct._borrow(OldPool())() == "EVALSHA"
    assert _direct._borrow(NewPool())() == "new"


def test_a_dropped_lock_does_not_keep_its_client_alive(redis_server: Any, key_prefix: str) -> None:
    import gc
    import weakref

    admin = redis_server.client()
    # By id, not by count: garbage of earlier tests may close its connections meanwhile.
    before = {c["id"] for c in admin.client_list()}
    lock = RedisLock("dropped", backend=redis_server.url, prefix=key_prefix)
    lock.acquire().release()
    pool = weakref.ref(lock.backend.client.connection_pool)
    assert _direct.stack_of(pool())  # a connection is kept ready
    assert {c["id"] for c in admin.client_list()} - before
    del lock
    gc.collect()
    assert pool() is None  # pool and kept connections went with the lock's client
    deadline = time.monotonic() + 5
    while left := {c["id"] for c in admin.client_list()} - before:
        assert time.monotonic() < deadline, left
        time.sleep(0.01)
    admin.close()
