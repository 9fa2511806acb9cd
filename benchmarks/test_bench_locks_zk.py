"""ZooKeeper lock cycle (acquire + release, uncontended) against kazoo's floor and its Lock.

Goals from issue 7: ours <= 1.3x a kazoo create+delete of an ephemeral sequential node (the
floor: two write round trips) and not slower than kazoo's ``Lock`` recipe (4 round trips).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from kazoo.recipe.lock import Lock

from benchmarks.conftest import Contender
from dsprims.locks.zookeeper import AsyncZooKeeperLock, ZooKeeperLock

GROUP = "locks: ZooKeeper acquire+release (uncontended)"
FLOOR = "kazoo create+delete (ephemeral sequential)"


@pytest.fixture(scope="module", autouse=True)
def _warm_server(_dsprims_zookeeper_session: Any) -> None:
    """Warm up the freshly started JVM first, so the first benchmark is not the slowest."""
    client = _dsprims_zookeeper_session.client()
    parent = f"/warm{uuid.uuid4().hex[:8]}"
    client.ensure_path(parent)
    for _ in range(400):
        path = client.create_async(f"{parent}/n-", b"", ephemeral=True, sequence=True).get()
        client.delete_async(path).get()
    client.stop()
    client.close()


def _kazoo_floor(client: Any) -> Any:
    """Two write round trips: create an ephemeral sequential node, delete it."""
    parent = f"/b{uuid.uuid4().hex[:8]}/floor"
    client.ensure_path(parent)

    def cycle() -> None:
        path = client.create_async(f"{parent}/n-", b"", ephemeral=True, sequence=True).get()
        client.delete_async(path).get()

    return cycle


def test_zk_cycle(zookeeper_backend: Any, zookeeper_server: Any, compare: Any) -> None:
    lock = ZooKeeperLock("bench", backend=zookeeper_backend, prefix=f"b{uuid.uuid4().hex[:8]}")
    client = zookeeper_server.client()
    kazoo_lock = Lock(client, f"/b{uuid.uuid4().hex[:8]}/kazoo")

    def kazoo_cycle() -> None:
        kazoo_lock.acquire()
        kazoo_lock.release()

    compare(
        GROUP,
        [
            Contender("ours", "dsprims ZooKeeperLock", lambda: lock.acquire().release()),
            Contender(
                "floor",
                "kazoo create+delete (ephemeral sequential)",
                _kazoo_floor(client),
                goal=1.3,
            ),
            Contender("peer", "kazoo 2.11 Lock", kazoo_cycle, goal=1.0),
        ],
    )
    client.stop()
    client.close()


ASYNC_GROUP = "locks: ZooKeeper async acquire+release (uncontended)"


def test_zk_async_cycle(zookeeper_backend: Any, zookeeper_server: Any, compare: Any) -> None:
    lock = AsyncZooKeeperLock("bench", backend=zookeeper_backend, prefix=f"b{uuid.uuid4().hex[:8]}")
    client = zookeeper_server.client()
    loop = asyncio.new_event_loop()

    async def cycle() -> None:
        lease = await lock.acquire()
        await lease.release()

    compare(
        ASYNC_GROUP,
        [
            Contender("ours", "dsprims AsyncZooKeeperLock", cycle),
            Contender(
                "floor",
                "kazoo create+delete (ephemeral sequential)",
                _kazoo_floor(client),
                goal=1.3,
            ),
        ],
        loop=loop,
    )
    loop.close()
    client.stop()
    client.close()
