"""ZooKeeperLock and AsyncZooKeeperLock against a real ZooKeeper server."""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError

from dsprims import (
    BackendUnavailable,
    ConfigurationError,
    LockLost,
    LockNotAcquired,
    backend_from_url,
)
from dsprims.backends.zookeeper import ZooKeeperBackend
from dsprims.locks.lease import LeaseBase
from dsprims.locks.zookeeper import AsyncZooKeeperLock, ZooKeeperLock
from dsprims.testing.servers import ZooKeeperServerProcess, _send

from .conftest import MakeBackend, children, expire_session, wait_until

pytestmark = pytest.mark.zookeeper


def test_grant_token_is_the_contender_czxid_and_release_cleans_up(
    zookeeper_backend: ZooKeeperBackend, key_prefix: str
) -> None:
    lock = ZooKeeperLock("orders", backend=zookeeper_backend, prefix=key_prefix)
    tokens = []
    for _ in range(3):
        lease = lock.acquire(timeout=5)
        _data, stat = zookeeper_backend.request("get", lease.owner)
        assert lease.token == stat.czxid
        assert not lease.lost
        lease.check()
        tokens.append(lease.token)
        lease.release()
        assert children(zookeeper_backend, lock.path) == []
    assert tokens == sorted(set(tokens))


async def test_a_started_kazoo_client_is_taken_as_the_backend_and_left_open(
    zookeeper_server: ZooKeeperServerProcess, key_prefix: str
) -> None:
    client = zookeeper_server.client()
    try:
        lock = ZooKeeperLock("direct", backend=client, prefix=key_prefix)
        with lock.acquire(timeout=5) as first:
            assert first.token > 0
        alock = AsyncZooKeeperLock("direct", backend=client, prefix=key_prefix)
        async with alock as second:
            assert second.token > first.token
        lock.close()
        await alock.aclose()
        assert client.connected  # a passed-in client stays the caller's
    finally:
        client.stop()
        client.close()


def test_try_acquire_and_timeouts_leave_no_contender_behind(
    make_backend: MakeBackend, key_prefix: str
) -> None:
    one, two = make_backend(), make_backend()
    holder = ZooKeeperLock("job", backend=one, prefix=key_prefix)
    other = ZooKeeperLock("job", backend=two, prefix=key_prefix)
    with holder as lease:
        assert other.try_acquire() is None
        with pytest.raises(LockNotAcquired):
            other.acquire(timeout=0.2)
        with pytest.raises(LockNotAcquired):
            other.acquire(timeout=0)
        assert children(one, holder.path) == [lease.owner.rsplit("/", 1)[1]]
    second = other.try_acquire()
    assert second is not None
    assert second.token > lease.token
    second.release()


def test_waiters_are_fifo_and_watch_only_their_predecessor(
    zookeeper_server: ZooKeeperServerProcess, make_backend: MakeBackend, key_prefix: str
) -> None:
    backends = [make_backend() for _ in range(4)]
    locks = [ZooKeeperLock("fifo", backend=b, prefix=key_prefix) for b in backends]
    first = locks[0].acquire()
    order: list[int] = []
    leases: dict[int, Any] = {}
    threads = []
    for i in (1, 2, 3):

        def contend(i: int = i) -> None:
            lease = locks[i].acquire(timeout=30)
            order.append(i)
            leases[i] = lease
            lease.release()

        thread = threading.Thread(target=contend)
        thread.start()
        threads.append(thread)
        # Enqueue one at a time so arrival order is known.
        assert wait_until(lambda i=i: len(children(backends[0], locks[0].path)) == i + 1)
    # Every contender node but the last is watched by exactly one session (no herd).
    nodes = sorted(children(backends[0], locks[0].path), key=lambda n: n[-10:])

    def watch_counts() -> list[int]:
        watches = _send(zookeeper_server.port, b"wchp", timeout=2.0).decode()
        blocks = {}
        for block in watches.split("\n/"):
            lines = [line for line in block.strip().splitlines() if line.strip()]
            if lines:
                blocks[lines[0].lstrip("/").rsplit("/", 1)[-1]] = len(lines) - 1
        return [blocks.get(n, 0) for n in nodes]

    assert wait_until(lambda: sum(watch_counts()) >= 3)
    assert watch_counts() == [1, 1, 1, 0]
    first.release()
    for thread in threads:
        thread.join(30)
    assert order == [1, 2, 3]
    assert [leases[i].token for i in (1, 2, 3)] == sorted(leases[i].token for i in (1, 2, 3))
    assert children(backends[0], locks[0].path) == []


def test_session_expiry_marks_the_lease_lost_and_release_raises(
    zookeeper_server: ZooKeeperServerProcess, make_backend: MakeBackend, key_prefix: str
) -> None:
    backend = make_backend(session_timeout=2.0)
    fired: list[LeaseBase] = []
    lock = ZooKeeperLock("sess", backend=backend, prefix=key_prefix, on_lost=fired.append)
    lease = lock.acquire()
    expire_session(zookeeper_server.hosts, backend.client)
    assert wait_until(lambda: lease.lost)
    assert wait_until(lambda: fired == [lease])
    with pytest.raises(LockLost):
        lease.check()
    with pytest.raises(LockLost):
        lease.release()
    # The client opened a new session: the lock is free and works again.
    assert wait_until(lambda: backend.client.connected)
    again = ZooKeeperLock("sess", backend=make_backend(), prefix=key_prefix).acquire(timeout=10)
    assert again.token > lease.token
    again.release()


def test_suspended_is_lost_marks_at_suspend(
    zookeeper_server: ZooKeeperServerProcess, make_backend: MakeBackend, key_prefix: str
) -> None:
    backend = make_backend(session_timeout=4.0, timeout=1.0)
    strict = ZooKeeperLock("s", backend=backend, prefix=key_prefix, suspended_is_lost=True)
    lenient = ZooKeeperLock("l", backend=backend, prefix=key_prefix)
    strict_lease, lenient_lease = strict.acquire(), lenient.acquire()
    assert strict.session_state == "CONNECTED"
    zookeeper_server.freeze()
    try:
        assert wait_until(lambda: strict_lease.lost)
        assert lenient.session_state == "SUSPENDED"
        # The lenient lease stays valid until its local deadline, then is lost as well.
        assert wait_until(lambda: lenient_lease.lost, timeout=10)
    finally:
        zookeeper_server.thaw()


def test_extend_confirms_and_notices_a_deleted_node(
    zookeeper_backend: ZooKeeperBackend, key_prefix: str
) -> None:
    lock = ZooKeeperLock("ext", backend=zookeeper_backend, prefix=key_prefix)
    lease = lock.acquire()
    before = lease.deadline
    assert before is not None
    lease.extend()
    assert lease.deadline is not None
    assert lease.deadline > before
    zookeeper_backend.request("delete", lease.owner)  # an operator removes the node
    with pytest.raises(LockLost):
        lease.extend()
    assert lease.lost


def test_heartbeat_keeps_a_long_hold_valid(make_backend: MakeBackend, key_prefix: str) -> None:
    backend = make_backend(session_timeout=0.6, timeout=1.0)
    lock = ZooKeeperLock("hb", backend=backend, prefix=key_prefix)
    lease = lock.acquire()
    first = lease.deadline
    assert first is not None
    # The heartbeat confirms the session and pushes the deadline out past the first one.
    assert wait_until(lambda: (lease.deadline or 0) > first + 0.1, timeout=10)
    assert not lease.lost
    lease.release()


def test_abandoned_create_is_deleted_when_its_reply_arrives(
    zookeeper_server: ZooKeeperServerProcess, make_backend: MakeBackend, key_prefix: str
) -> None:
    backend = make_backend(session_timeout=8.0, timeout=0.3)
    lock = ZooKeeperLock("late", backend=backend, prefix=key_prefix)
    lock.acquire().release()  # the lock znode exists
    zookeeper_server.freeze()
    try:
        with pytest.raises(BackendUnavailable):
            lock.acquire(timeout=5)
    finally:
        zookeeper_server.thaw()
    watcher = make_backend()
    assert wait_until(lambda: lock.pending_cleanups() == 0, timeout=15)
    assert children(watcher, lock.path) == []
    lease = lock.acquire(timeout=5)
    lease.release()


def test_create_whose_reply_died_with_the_connection_is_swept_on_reconnect(
    zookeeper_server: ZooKeeperServerProcess, make_backend: MakeBackend, key_prefix: str
) -> None:
    # kazoo issue #732: the create reaches the server but its reply is lost with the
    # connection; the session survives, so nothing would ever delete the node.
    backend = make_backend(session_timeout=3.0, timeout=0.3)
    # No idle-znode cleanup here: a delete sent into the frozen connection would count as a
    # ping for kazoo and postpone SUSPENDED by up to a read timeout, close to the 3 s session.
    lock = ZooKeeperLock("lost-reply", backend=backend, prefix=key_prefix, cleanup_delay=None)
    lock.acquire().release()
    suspended = threading.Event()
    backend.add_listener(lambda state: suspended.set() if state == "SUSPENDED" else None)
    session_id = backend.client.client_id[0]
    zookeeper_server.freeze()
    try:
        with pytest.raises(BackendUnavailable):
            lock.acquire(timeout=5)
        assert suspended.wait(10)  # the client gave up on the connection (reply lost)
    finally:
        zookeeper_server.thaw()
    assert wait_until(lambda: backend.client.connected, timeout=15)
    assert backend.client.client_id[0] == session_id  # same session: no help from expiry
    assert wait_until(lambda: lock.pending_cleanups() == 0, timeout=15)
    assert children(make_backend(), lock.path) == []
    lock.acquire(timeout=5).release()


@pytest.mark.parametrize("chroot", ["", "/chrooted"])
def test_digest_acl_keeps_strangers_out(
    zookeeper_server: ZooKeeperServerProcess, key_prefix: str, chroot: str
) -> None:
    root = f"{chroot}-{key_prefix}" if chroot else ""
    backend = backend_from_url(f"{zookeeper_server.url}{root}?digest=alice:secret", timeout=2.0)
    try:
        lock = ZooKeeperLock("acl", backend=backend, prefix=key_prefix)
        lease = lock.acquire()
        assert not lock.try_acquire()
        stranger = zookeeper_server.client()
        try:
            assert stranger.exists(f"{root}{lease.owner}") is not None
            with pytest.raises(NoAuthError):
                stranger.delete(f"{root}{lease.owner}")
            with pytest.raises(NoAuthError):
                stranger.create(f"{root}{lock.path}/x-lock-", b"", sequence=True)
        finally:
            stranger.stop()
            stranger.close()
        assert not lease.lost
        lease.release()
    finally:
        backend.close()


def test_bad_input(zookeeper_backend: ZooKeeperBackend) -> None:
    with pytest.raises(ConfigurationError):
        ZooKeeperLock("", backend=zookeeper_backend)
    with pytest.raises(ConfigurationError):
        ZooKeeperLock("x", backend="memory://")
    with pytest.raises(ConfigurationError):
        ZooKeeperLock("x", backend=zookeeper_backend, session_timeout=0)
    with pytest.raises(ConfigurationError):
        ZooKeeperLock("x", backend=zookeeper_backend, session_timeout=float("nan"))
    lock = ZooKeeperLock("x", backend=zookeeper_backend)
    with pytest.raises(ConfigurationError):
        lock.acquire(timeout=-1)
    with pytest.raises(ConfigurationError):
        lock.acquire(timeout=float("nan"))
    with pytest.raises(TypeError):
        ZooKeeperLock(3, backend=zookeeper_backend)  # type: ignore[arg-type]


def test_hostile_names_stay_under_the_prefix(
    zookeeper_backend: ZooKeeperBackend, key_prefix: str
) -> None:
    for name in ["../../zookeeper", "a/b", "x-lock-0000000001", "{}\n"]:
        # cleanup_delay=None keeps the lock znodes, so they can be counted below.
        lock = ZooKeeperLock(name, backend=zookeeper_backend, prefix=key_prefix, cleanup_delay=None)
        assert lock.path.startswith(f"/{key_prefix}/")
        lock.acquire().release()
    assert "zookeeper" in zookeeper_backend.request("get_children", "/")
    assert len(children(zookeeper_backend, f"/{key_prefix}")) == 4


async def test_async_lock_basic_and_context_manager(
    zookeeper_backend: ZooKeeperBackend, key_prefix: str
) -> None:
    lock = AsyncZooKeeperLock("a", backend=zookeeper_backend, prefix=key_prefix)
    async with lock as lease:
        _data, stat = zookeeper_backend.request("get", lease.owner)
        assert lease.token == stat.czxid
        assert await lock.try_acquire() is None
        with pytest.raises(LockNotAcquired):
            await lock.acquire(timeout=0.1)
    assert children(zookeeper_backend, lock.path) == []
    lease = await lock.acquire(timeout=1)
    await lease.extend()
    await lease.release()


async def test_async_cancellation_storm_leaves_no_orphans(
    make_backend: MakeBackend, key_prefix: str
) -> None:
    holder_backend, backend = make_backend(), make_backend()
    holder = AsyncZooKeeperLock("storm", backend=holder_backend, prefix=key_prefix)
    lock = AsyncZooKeeperLock("storm", backend=backend, prefix=key_prefix)
    rng = random.Random(7)
    held = await holder.acquire()
    got = 0

    async def contender(patient: bool = False) -> None:
        nonlocal got
        try:
            lease = await asyncio.wait_for(lock.acquire(), 10 if patient else rng.uniform(0, 0.02))
        except TimeoutError:
            return
        got += 1
        await lease.release()

    for round_ in range(50):  # 1,000 wait_for(acquire(), random timeout)
        # After the release, one patient contender per round must get through the churn.
        await asyncio.gather(*(contender(round_ > 25 and i == 10) for i in range(20)))
        if round_ == 25:
            await held.release()  # the second half races for a free lock
    if not held.released:
        await held.release()
    assert await asyncio.to_thread(wait_until, lambda: lock.pending_cleanups() == 0, 15)
    assert await asyncio.to_thread(
        wait_until, lambda: children(holder_backend, lock.path) == [], 15
    )
    assert got >= 24  # the patient ones got through, the others timed out cleanly
    lease = await lock.try_acquire()
    assert lease is not None
    await lease.release()


async def test_async_session_loss(
    zookeeper_server: ZooKeeperServerProcess, make_backend: MakeBackend, key_prefix: str
) -> None:
    backend = make_backend(session_timeout=2.0)
    lost = asyncio.Event()
    loop = asyncio.get_running_loop()
    lock = AsyncZooKeeperLock(
        "al",
        backend=backend,
        prefix=key_prefix,
        on_lost=lambda _lease: loop.call_soon_threadsafe(lost.set),
    )
    lease = await lock.acquire()
    await asyncio.to_thread(expire_session, zookeeper_server.hosts, backend.client)
    await asyncio.wait_for(lost.wait(), 10)
    assert lease.lost
    with pytest.raises(LockLost):
        await lease.release()


def test_works_without_a_pre_existing_client_session_listener(
    zookeeper_server: ZooKeeperServerProcess, key_prefix: str
) -> None:
    client = KazooClient(hosts=zookeeper_server.hosts, timeout=4.0)
    client.start(timeout=10)
    try:
        lock = ZooKeeperLock("raw", backend=ZooKeeperBackend(client), prefix=key_prefix)
        with lock as lease:
            assert not lease.lost
    finally:
        client.stop()
        client.close()


def test_demo_section_on_a_real_zookeeper(zookeeper_server: ZooKeeperServerProcess) -> None:
    import io

    from dsprims.cli import DemoOptions, DemoOutput
    from dsprims.locks import demo_zookeeper

    out = io.StringIO()
    demo_zookeeper.run(DemoOutput(out), DemoOptions(zookeeper=zookeeper_server.hosts))
    text = out.getvalue()
    assert "should not happen" not in text
    assert "stopped" not in text
    assert "raises LockLost" in text
    assert "refused: StaleTokenError" in text
    skipped = io.StringIO()
    demo_zookeeper.run(DemoOutput(skipped), DemoOptions())
    assert "Skipped" in skipped.getvalue()


def test_a_dropped_lease_frees_the_lock_when_collected(
    make_backend: MakeBackend, key_prefix: str
) -> None:
    import gc

    one, two = make_backend(), make_backend()
    lock = ZooKeeperLock("dropped", backend=one, prefix=key_prefix)
    lease = lock.acquire()
    token = lease.token
    del lease
    gc.collect()
    other = ZooKeeperLock("dropped", backend=two, prefix=key_prefix).acquire(timeout=10)
    assert other.token > token
    other.release()
    assert wait_until(lambda: lock.pending_cleanups() == 0)


def test_a_lease_lost_by_its_local_deadline_frees_the_lock_at_once(
    make_backend: MakeBackend, key_prefix: str
) -> None:
    from dsprims import ManualClock

    clock = ManualClock(start=50.0)
    one, two = make_backend(session_timeout=4.0), make_backend()
    lock = ZooKeeperLock("paused", backend=one, prefix=key_prefix, clock=clock)
    lease = lock.acquire()
    clock.advance(4.0)  # a pause as long as the session timeout, seen on the lock's clock
    assert lease.lost  # no round trip; the session itself is still alive
    assert one.client.connected
    # The node was deleted on the loss, so the next holder does not wait for the session.
    other = ZooKeeperLock("paused", backend=two, prefix=key_prefix).acquire(timeout=10)
    assert other.token > lease.token
    with pytest.raises(LockLost):
        lease.release()
    other.release()


def test_a_waiter_rides_out_the_expiry_of_its_own_session(
    zookeeper_server: ZooKeeperServerProcess, make_backend: MakeBackend, key_prefix: str
) -> None:
    holder_backend = make_backend()
    waiter_backend = make_backend(session_timeout=2.0, timeout=3.0)
    holder = ZooKeeperLock("ride", backend=holder_backend, prefix=key_prefix).acquire()
    waiter = ZooKeeperLock("ride", backend=waiter_backend, prefix=key_prefix)
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append(waiter.acquire(timeout=30)))
    thread.start()
    assert wait_until(lambda: len(children(holder_backend, waiter.path)) == 2)
    old_session = waiter_backend.client.client_id[0]
    expire_session(zookeeper_server.hosts, waiter_backend.client)
    assert wait_until(lambda: (waiter_backend.client.client_id or (old_session,))[0] != old_session)
    # The waiter enrolled again in its new session and still waits behind the holder.
    assert wait_until(lambda: len(children(holder_backend, waiter.path)) == 2)
    assert not got
    holder.release()
    thread.join(30)
    assert got
    assert got[0].token > holder.token
    assert not got[0].lost  # granted in the new session: not mistaken for a straddled grant
    got[0].release()
