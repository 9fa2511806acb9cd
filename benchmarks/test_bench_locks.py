"""Locks on Redis: uncontended acquire+release (sync, async) and Redlock over three servers.

Peers: redis-py ``Lock`` (no token, no queue) and python-redis-lock (no token); floors: a bare
PING (one round trip) through the same kind of client. The goal groups run their contenders
interleaved (``compare``), so the machine's load hits all of them alike. The Redlock group also
times, on plain sockets, the cycle's two fan-outs of PING and of its exact scripts with no client
logic: the floors the cycle stands on (``benchmarks/locks_redlock_breakdown.py`` goes further).
The contended numbers (handoff latency, round trips per acquisition, 4 processes) come from
``benchmarks/locks_contention.py``, a report script, not from timed tests.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_py
import redis.asyncio as aredis
import redis_lock

from benchmarks.conftest import Contender
from dsprims import async_backend_from_url, backend_from_url
from dsprims.locks import AsyncRedisLock, MemoryLock, RedisLock, Redlock
from dsprims.locks.redlock import ACQUIRE, RELEASE
from dsprims.testing.servers import RedisServerProcess

CYCLE = "locks: Redis acquire+release, uncontended"
ACYCLE = "locks: async Redis acquire+release, uncontended"
REDLOCK = "locks: Redlock x3 acquire+release"
MEMORY = "locks: memory acquire+release"


def test_cycle(redis_server: Any, compare: Any) -> None:
    backend = backend_from_url(redis_server.url)
    lock = RedisLock("bench", backend=backend, prefix="bench")
    client = redis_server.client()
    peer = client.lock("bench:redis-py", timeout=10)

    def peer_cycle() -> None:
        peer.acquire()
        peer.release()

    def prl_cycle() -> None:
        prl = redis_lock.Lock(client, "bench:prl", expire=10)
        prl.acquire()
        prl.release()

    compare(
        CYCLE,
        [
            Contender(
                "ours",
                "dsprims RedisLock (token, FIFO, watchdog)",
                lambda: lock.acquire().release(),
            ),
            Contender("peer", f"redis-py {redis_py.__version__} Lock", peer_cycle, goal=1.0),
            Contender("peer", "python-redis-lock 4.0", prl_cycle),
            Contender("floor", "bare PING (1 round trip)", client.ping, goal=2.5),
        ],
    )
    client.close()
    backend.close()


def test_async_cycle(redis_server: Any, compare: Any) -> None:
    loop = asyncio.new_event_loop()
    backend = async_backend_from_url(redis_server.url)
    lock = AsyncRedisLock("abench", backend=backend, prefix="bench")
    client = aredis.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=1.0)
    peer = client.lock("bench:aredis-py", timeout=10)

    async def ours() -> None:
        lease = await lock.acquire()
        await lease.release()

    async def peer_cycle() -> None:
        await peer.acquire()
        await peer.release()

    async def ping() -> None:
        await client.ping()

    compare(
        ACYCLE,
        [
            Contender("ours", "dsprims AsyncRedisLock", ours),
            Contender("peer", f"redis.asyncio {redis_py.__version__} Lock", peer_cycle, goal=1.0),
            Contender("floor", "bare async PING (1 round trip)", ping, goal=2.5),
        ],
        loop=loop,
    )
    loop.run_until_complete(lock.settle())
    loop.run_until_complete(backend.aclose())
    loop.run_until_complete(client.aclose())
    loop.close()


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


def _raw_rounds(socks: list[socket.socket], first: list[bytes], second: list[bytes]) -> Any:
    """Two rounds of one command per server: all sent, then all replies read (blocking)."""

    def rounds() -> None:
        for commands in (first, second):
            for sock, command in zip(socks, commands, strict=True):
                sock.sendall(command)
            for sock in socks:
                sock.recv(4096)  # the replies are a few bytes: one recv each

    return rounds


def test_redlock(redis_server: Any, two_more: list[RedisServerProcess], compare: Any) -> None:
    backends = [backend_from_url(s.url) for s in (redis_server, *two_more)]
    lock = Redlock("bench", backends=backends, prefix="bench")
    client = redis_server.client()
    socks = [socket.create_connection(("127.0.0.1", s.port)) for s in (redis_server, *two_more)]
    for sock in socks:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    lock.acquire().release()  # loads the scripts on every server
    # The exact commands of one cycle, sent on plain sockets with no lock logic around them.
    store = lock._redlock_store
    acquire = store.servers.packed(ACQUIRE, store.plan.acquire_bodies("f" * 32, ""))
    release = store.servers.packed(RELEASE, store.plan.release_bodies("f" * 32))
    ping = [b"*1\r\n$4\r\nPING\r\n"] * len(socks)
    compare(
        REDLOCK,
        [
            Contender(
                "ours", "dsprims Redlock (3 servers, parallel)", lambda: lock.acquire().release()
            ),
            Contender("floor", "bare PING (1 round trip)", client.ping, goal=3.5),
            Contender(
                "floor",
                "raw sockets: 2 fan-outs of PING x3 (the cycle's I/O, no scripts)",
                _raw_rounds(socks, ping, ping),
            ),
            Contender(
                "floor",
                "raw sockets: 2 fan-outs of the cycle's scripts x3 (no client logic)",
                _raw_rounds(socks, acquire, release),
            ),
        ],
    )
    for sock in socks:
        sock.close()
    lock.close()
    client.close()
    for b in backends:
        b.close()


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
