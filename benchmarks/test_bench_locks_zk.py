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

from dsprims.locks.zookeeper import AsyncZooKeeperLock, ZooKeeperLock

GROUP = "locks: ZooKeeper acquire+release (uncontended)"


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


def test_zk_cycle_ours(zookeeper_backend: Any, mark: Any) -> None:
    lock = ZooKeeperLock("bench", backend=zookeeper_backend, prefix=f"b{uuid.uuid4().hex[:8]}")

    def cycle() -> None:
        lock.acquire().release()

    cycle()
    mark(GROUP, "ours", "dsprims ZooKeeperLock")(cycle)


def test_zk_cycle_floor(zookeeper_server: Any, mark: Any) -> None:
    client = zookeeper_server.client()
    parent = f"/b{uuid.uuid4().hex[:8]}/floor"
    client.ensure_path(parent)

    def cycle() -> None:
        path = client.create_async(f"{parent}/n-", b"", ephemeral=True, sequence=True).get()
        client.delete_async(path).get()

    cycle()
    mark(GROUP, "floor", "kazoo create+delete (ephemeral sequential)", goal=1.3)(cycle)
    client.stop()
    client.close()


def test_zk_cycle_kazoo_lock(zookeeper_server: Any, mark: Any) -> None:
    client = zookeeper_server.client()
    lock = Lock(client, f"/b{uuid.uuid4().hex[:8]}/kazoo")

    def cycle() -> None:
        lock.acquire()
        lock.release()

    cycle()
    mark(GROUP, "peer", "kazoo 2.11 Lock", goal=1.0)(cycle)
    client.stop()
    client.close()


ASYNC_GROUP = "locks: ZooKeeper async acquire+release (uncontended)"


def test_zk_async_cycle_ours(zookeeper_backend: Any, mark: Any) -> None:
    lock = AsyncZooKeeperLock("bench", backend=zookeeper_backend, prefix=f"b{uuid.uuid4().hex[:8]}")
    loop = asyncio.new_event_loop()

    async def cycle() -> None:
        lease = await lock.acquire()
        await lease.release()

    def run() -> None:
        loop.run_until_complete(cycle())

    run()
    mark(ASYNC_GROUP, "ours", "dsprims AsyncZooKeeperLock")(run)
    loop.close()


def test_zk_async_cycle_floor(zookeeper_server: Any, mark: Any) -> None:
    client = zookeeper_server.client()
    parent = f"/b{uuid.uuid4().hex[:8]}/floor"
    client.ensure_path(parent)

    def cycle() -> None:
        path = client.create_async(f"{parent}/n-", b"", ephemeral=True, sequence=True).get()
        client.delete_async(path).get()

    mark(ASYNC_GROUP, "floor", "kazoo create+delete (ephemeral sequential)", goal=1.3)(cycle)
    client.stop()
    client.close()
