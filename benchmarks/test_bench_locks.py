"""Locks on Redis: uncontended acquire+release (sync, async) and Redlock over three servers.

Peers: redis-py ``Lock`` (no token, no queue) and python-redis-lock (no token); floors: a bare
PING (one round trip) through the same client. The contended numbers (handoff latency, round
trips per acquisition, 4 processes) come from ``benchmarks/locks_contention.py``, a report
script, not from timed tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_py
import redis.asyncio as aredis
import redis_lock

from dsprims import async_backend_from_url, backend_from_url
from dsprims.locks import AsyncRedisLock, MemoryLock, RedisLock, Redlock
from dsprims.testing.servers import RedisServerProcess

CYCLE = "locks: Redis acquire+release, uncontended"
ACYCLE = "locks: async Redis acquire+release, uncontended (x50 per round)"
REDLOCK = "locks: Redlock x3 acquire+release"
MEMORY = "locks: memory acquire+release"
BATCH = 50


def test_cycle_ours(redis_server: Any, mark: Any) -> None:
    backend = backend_from_url(redis_server.url)
    lock = RedisLock("bench", backend=backend, prefix="bench")

    def cycle() -> None:
        lock.acquire().release()

    cycle()
    mark(CYCLE, "ours", "dsprims RedisLock (token, FIFO, watchdog)")(cycle)
    backend.close()


def test_cycle_redis_py(redis_server: Any, mark: Any) -> None:
    client = redis_server.client()
    lock = client.lock("bench:redis-py", timeout=10)

    def cycle() -> None:
        lock.acquire()
        lock.release()

    mark(CYCLE, "peer", f"redis-py {redis_py.__version__} Lock", goal=1.0)(cycle)
    client.close()


def test_cycle_python_redis_lock(redis_server: Any, mark: Any) -> None:
    client = redis_server.client()

    def cycle() -> None:
        lock = redis_lock.Lock(client, "bench:prl", expire=10)
        lock.acquire()
        lock.release()

    mark(CYCLE, "peer", "python-redis-lock 4.0")(cycle)
    client.close()


def test_cycle_ping(redis_server: Any, mark: Any) -> None:
    client = redis_server.client()
    mark(CYCLE, "floor", "bare PING (1 round trip)", goal=2.5)(client.ping)
    client.close()


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


def test_async_cycle_ours(redis_server: Any, mark: Any, loop: asyncio.AbstractEventLoop) -> None:
    backend = async_backend_from_url(redis_server.url)
    lock = AsyncRedisLock("abench", backend=backend, prefix="bench")

    async def rounds() -> None:
        for _ in range(BATCH):
            lease = await lock.acquire()
            await lease.release()

    loop.run_until_complete(rounds())

    def run() -> None:
        loop.run_until_complete(rounds())

    mark(ACYCLE, "ours", "dsprims AsyncRedisLock")(run)
    loop.run_until_complete(backend.aclose())


def test_async_cycle_redis_py(
    redis_server: Any, mark: Any, loop: asyncio.AbstractEventLoop
) -> None:
    client = aredis.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=1.0)
    lock = client.lock("bench:aredis-py", timeout=10)

    async def rounds() -> None:
        for _ in range(BATCH):
            await lock.acquire()
            await lock.release()

    def run() -> None:
        loop.run_until_complete(rounds())

    mark(ACYCLE, "peer", f"redis.asyncio {redis_py.__version__} Lock", goal=1.0)(run)
    loop.run_until_complete(client.aclose())


def test_async_cycle_ping(redis_server: Any, mark: Any, loop: asyncio.AbstractEventLoop) -> None:
    client = aredis.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=1.0)

    async def rounds() -> None:
        for _ in range(BATCH):
            await client.ping()

    def run() -> None:
        loop.run_until_complete(rounds())

    mark(ACYCLE, "floor", "bare async PING (1 round trip)", goal=2.5)(run)
    loop.run_until_complete(client.aclose())


@pytest.fixture(scope="module")
def two_more(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RedisServerProcess]]:
    servers = [RedisServerProcess.create(tmp_path_factory.mktemp(f"bench{i}")) for i in range(2)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def test_redlock_ours(redis_server: Any, two_more: list[RedisServerProcess], mark: Any) -> None:
    backends = [backend_from_url(s.url) for s in (redis_server, *two_more)]
    lock = Redlock("bench", backends=backends, prefix="bench")

    def cycle() -> None:
        lock.acquire().release()

    cycle()
    mark(REDLOCK, "ours", "dsprims Redlock (3 servers, parallel)")(cycle)
    lock.close()
    for b in backends:
        b.close()


def test_redlock_ping(redis_server: Any, mark: Any) -> None:
    client = redis_server.client()
    mark(REDLOCK, "floor", "bare PING (1 round trip)", goal=3.5)(client.ping)
    client.close()


def test_memory_ours(mark: Any) -> None:
    lock = MemoryLock("bench")

    def cycle() -> None:
        lock.acquire().release()

    mark(MEMORY, "ours", "dsprims MemoryLock (token, FIFO, watchdog)")(cycle)


def test_memory_no_renew(mark: Any) -> None:
    lock = MemoryLock("bench", auto_renew=False)

    def cycle() -> None:
        lock.acquire().release()

    mark(MEMORY, "peer", "dsprims MemoryLock, auto_renew=False")(cycle)
