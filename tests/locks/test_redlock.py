"""Redlock over three real, independent Redis servers."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsprims import (
    BackendUnavailable,
    ConfigurationError,
    LockLost,
    LockNotAcquired,
    async_backend_from_url,
    backend_from_url,
)
from dsprims.locks import AsyncRedlock, Redlock
from dsprims.locks.core import AcquireDecision, quorum_outcome
from dsprims.testing.servers import RedisServerProcess
from tests.locks import IDLE_FIELDS

from .test_acceptance import run_contention

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def three_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RedisServerProcess]]:
    servers = [RedisServerProcess.create(tmp_path_factory.mktemp(f"rl{i}")) for i in range(3)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def servers(three_servers: list[RedisServerProcess]) -> list[RedisServerProcess]:
    for server in three_servers:
        server.ensure_running()
    return three_servers


@pytest.fixture
def backends(servers: list[RedisServerProcess]) -> Iterator[list[Any]]:
    made = [backend_from_url(s.url) for s in servers]
    yield made
    for b in made:
        b.close()


def _keys(backends: list[Any], prefix: str) -> list[list[bytes]]:
    """Per server, the keys holding lock state beyond the fencing counter."""
    return [
        sorted(
            k
            for k in b.client.scan_iter(match=f"{prefix}*")
            if not (k.endswith(b":lock") and sorted(b.client.hkeys(k)) == IDLE_FIELDS)
        )
        for b in backends
    ]


def test_quorum_outcome() -> None:
    yes = AcquireDecision(True, 7)
    no = AcquireDecision(False, 0, 500)
    assert quorum_outcome([yes, AcquireDecision(True, 9), no], 0.01, 10, 0.01).token == 9
    assert not quorum_outcome([yes, None, no], 0.01, 10, 0.01).granted
    assert quorum_outcome([yes, None, no], 0.01, 10, 0.01).wait_us == 500
    assert quorum_outcome([None, None, no], 0.01, 10, 0.01).wait_us == -1
    # A majority that arrives too late is no lock: validity = ttl - drift - elapsed.
    assert not quorum_outcome([yes, yes, yes], 9.95, 10, 0.01).granted


def test_cycle_tokens_and_release_on_all(backends: list[Any], key_prefix: str) -> None:
    lock = Redlock("r", backends=backends, prefix=key_prefix, auto_renew=False)
    first = lock.acquire()
    assert lock.try_acquire() is None
    assert all(len(keys) == 1 for keys in _keys(backends, key_prefix))
    first.extend(20)
    first.release()
    assert _keys(backends, key_prefix) == [[], [], []]
    second = lock.acquire(timeout=1)
    assert second.token > first.token
    second.release()
    lock.close()


def test_a_minority_of_frozen_servers_does_not_stop_it(
    servers: list[RedisServerProcess], backends: list[Any], key_prefix: str
) -> None:
    lock = Redlock("f", backends=backends, prefix=key_prefix, server_timeout=0.2)
    with servers[2].frozen_for_a_while():
        lease = lock.acquire(timeout=5)
        lease.release()
        with servers[1].frozen_for_a_while():
            start = time.monotonic()
            with pytest.raises(LockNotAcquired):
                lock.acquire(timeout=0.5)
            assert time.monotonic() - start < 0.5 + 1.0
    lock.close()


def test_a_lease_without_majority_is_lost_at_extend(
    servers: list[RedisServerProcess], backends: list[Any], key_prefix: str
) -> None:
    lock = Redlock("l", backends=backends, prefix=key_prefix, auto_renew=False)
    lease = lock.acquire()
    for b in backends[:2]:
        b.client.delete(f"{key_prefix}:{{l}}:lock")  # two servers forgot it (restarts)
    with pytest.raises(LockLost):
        lease.extend()
    other = lock.acquire(timeout=1)
    assert other.token > lease.token
    other.release()
    lock.close()


def test_waiter_is_woken_by_release(backends: list[Any], key_prefix: str) -> None:
    import threading

    lock = Redlock("w", backends=backends, prefix=key_prefix)
    holder = lock.acquire()
    got: list[int] = []
    t = threading.Thread(target=lambda: got.append(lock.acquire(timeout=10).token))
    t.start()
    time.sleep(0.05)
    holder.release()
    t.join()
    assert got[0] > holder.token
    lock.close()  # its connections: a lock left to the garbage collector warns (unclosed sockets)


@pytest.mark.slow
def test_four_processes_never_lose_an_update_under_redlock(
    servers: list[RedisServerProcess], key_prefix: str
) -> None:
    urls = ",".join(server.url for server in servers)
    done = run_contention("redlock-counter", urls, key_prefix)
    client = servers[0].client()
    assert int(client.get(f"{key_prefix}:plain-counter")) == sum(done)  # zero lost updates
    assert all(n > 0 for n in done)
    client.close()


def test_bad_configuration(backends: list[Any], redis_cluster_backend: Any) -> None:
    with pytest.raises(ConfigurationError, match="at least one"):
        Redlock("x", backends=[])
    with pytest.raises(ConfigurationError, match="standalone"):
        Redlock("x", backends=[redis_cluster_backend])
    with pytest.raises(ConfigurationError, match="distinct"):
        Redlock("x", backends=[backends[0], backends[0]])
    with pytest.raises(ConfigurationError, match="ttl"):
        Redlock("x", backends=backends, ttl=0)


async def test_async_redlock_cancellation_leaves_nothing(
    servers: list[RedisServerProcess], key_prefix: str
) -> None:
    abackends = [async_backend_from_url(s.url) for s in servers]
    lock = AsyncRedlock("a", backends=abackends, prefix=key_prefix)
    holder = await lock.acquire()
    rng = random.Random(3)

    async def contender() -> None:
        try:
            lease = await asyncio.wait_for(lock.acquire(), rng.uniform(0, 0.03))
        except TimeoutError:
            return
        await lease.release()

    await asyncio.gather(*(contender() for _ in range(40)))
    await lock.settle()
    await holder.release()
    sync = [backend_from_url(s.url) for s in servers]
    assert _keys(sync, key_prefix) == [[], [], []]
    lease = await lock.acquire(timeout=0)
    assert lease.token > holder.token
    await lease.release()
    await lock.aclose()
    for b in [*abackends, *sync]:
        if hasattr(b, "aclose"):
            await b.aclose()
        else:
            b.close()


async def test_async_redlock_with_a_frozen_server(
    servers: list[RedisServerProcess], key_prefix: str
) -> None:
    abackends = [async_backend_from_url(s.url) for s in servers]
    lock = AsyncRedlock("af", backends=abackends, prefix=key_prefix, server_timeout=0.2)
    try:
        with servers[1].frozen_for_a_while():
            start = time.monotonic()
            lease = await lock.acquire(timeout=5)
            assert time.monotonic() - start < 0.2 * 2 + 1.0
            await lease.extend()
            await lease.release()
            with servers[2].frozen_for_a_while(), pytest.raises(LockNotAcquired):
                await lock.acquire(timeout=0.3)
    finally:
        await lock.aclose()
        for b in abackends:
            await b.aclose()


def test_reply_parser_reads_what_the_scripts_send() -> None:
    import redis.exceptions as rexc

    from dsprims.locks._direct import Incomplete as _Incomplete
    from dsprims.locks._direct import parse_reply as _parse

    cases: list[tuple[bytes, Any]] = [
        (b":1764300000123457\r\n", 1764300000123457),
        (b":-1\r\n", -1),
        (b"*2\r\n:-1\r\n$16\r\n0123456789abcdef\r\n", [-1, b"0123456789abcdef"]),
        (b"*2\r\n:250\r\n$0\r\n\r\n", [250, b""]),
        (b"$-1\r\n", None),
        (b"_\r\n", None),
        (b"+OK\r\n", b"OK"),
        (b"*2\r\n*1\r\n:1\r\n:2\r\n", [[1], 2]),
    ]
    for raw, expected in cases:
        assert _parse(raw, 0) == (expected, len(raw))
        for cut in range(len(raw)):  # every prefix is incomplete, never misread
            with pytest.raises(_Incomplete):
                _parse(raw[:cut], 0)
    error, end = _parse(b"-NOSCRIPT No matching script\r\n", 0)
    assert isinstance(error, rexc.NoScriptError)
    assert end == 30
    error, _ = _parse(b"-ERR boom\r\n", 0)
    assert type(error) is rexc.ResponseError
    with pytest.raises(rexc.InvalidResponse):
        _parse(b"%1\r\n", 0)


def _held_on(backends: list[Any], prefix: str, name: str) -> list[bool]:
    return [bool(b.client.hget(f"{prefix}:{{{name}}}:lock", "o")) for b in backends]


def test_scripts_flushed_on_every_server_fall_back_to_eval(
    backends: list[Any], key_prefix: str
) -> None:
    lock = Redlock("ns", backends=backends, prefix=key_prefix, auto_renew=False)
    lock.acquire().release()
    for b in backends:
        b.client.script_flush()
    lease = lock.acquire(timeout=0)  # NOSCRIPT on all three: EVAL in the same round
    assert _held_on(backends, key_prefix, "ns") == [True, True, True]
    for b in backends:
        b.client.script_flush()
    lease.extend()
    for b in backends:
        b.client.script_flush()
    lease.release()
    assert _held_on(backends, key_prefix, "ns") == [False, False, False]
    lock.close()


def test_a_restarted_server_is_a_refusal_then_rejoins(
    servers: list[RedisServerProcess], backends: list[Any], key_prefix: str
) -> None:
    lock = Redlock("rs", backends=backends, prefix=key_prefix, auto_renew=False)
    first = lock.acquire()
    first.release()
    servers[1].kill()  # the lock's idle connection to it is now dead
    second = lock.acquire(timeout=1)  # a majority of two still grants
    assert second.token > first.token
    assert _held_on([backends[0], backends[2]], key_prefix, "rs") == [True, True]
    second.release()
    servers[1].ensure_running()
    third = lock.acquire(timeout=1)  # reconnects: all three grant again
    assert _held_on(backends, key_prefix, "rs") == [True, True, True]
    third.release()
    lock.close()


class _Responder:
    """The far end of a socket pair standing in for a server: reads one command, then sends
    ``parts`` one after another (``None``: closes its side instead)."""

    def __init__(self, parts: list[bytes | None]) -> None:
        import threading

        self.client, self._far = socket.socketpair()
        self._parts = parts
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self._far.recv(65536)
        for part in self._parts:
            if part is None:
                self._far.shutdown(socket.SHUT_WR)
                return
            self._far.sendall(part)
            time.sleep(0.05)  # so the client reads the parts separately (not asserted)

    def close(self) -> None:
        self._thread.join()
        self._far.close()
        self.client.close()


class _FakeConnection:
    def __init__(self, sock: Any) -> None:
        sock.settimeout(0.0)
        self._sock = sock
        self.disconnected = False

    def disconnect(self) -> None:
        self.disconnected = True


def _fanout_over(
    replies: list[list[bytes | None]], timeout: float = 1.0
) -> tuple[list[Any], list[Any]]:
    """Run one sync fan-out against scripted fake servers; (replies, connections)."""
    import redis

    from dsprims.backends.redis import RedisBackend
    from dsprims.locks.redlock import RELEASE, _sync_fanout

    fakes = [redis.Redis(port=1) for _ in replies]  # never connected: only settings are read
    lock = Redlock("fake", backends=[RedisBackend(c) for c in fakes], server_timeout=timeout)
    servers = lock._redlock_store.servers
    responders = [_Responder(parts) for parts in replies]
    conns = [_FakeConnection(r.client) for r in responders]
    for i, conn in enumerate(conns):
        servers._idle[i].append(conn)
    got = _sync_fanout(servers, RELEASE, lock._redlock_store.plan.release_bodies("o" * 32))
    for r in responders:
        r.close()
    return got, conns


def test_fanout_reads_split_replies_and_drops_broken_connections() -> None:
    from dsprims import BackendError, BackendUnavailable

    got, conns = _fanout_over(
        [
            [b":1", b"23\r\n"],  # an integer split across reads
            [b"*2\r\n:-1\r\n", b"$2\r\nab\r\n"],  # an array split across reads
            [b":1\r\n:2\r\n"],  # bytes after the reply: never trusted
            [b"-ERR boom\r\n"],  # a whole error reply: the connection stays usable
            [None],  # closed without a reply
        ]
    )
    assert got[:2] == [123, [-1, b"ab"]]
    assert [type(g) for g in got[2:]] == [BackendError, BackendError, BackendUnavailable]
    # Only a connection that ended on a whole reply is reused.
    assert [c.disconnected for c in conns] == [False, False, True, False, True]


def test_fanout_times_out_a_silent_server_and_drops_its_connection() -> None:
    from dsprims import BackendUnavailable

    start = time.monotonic()
    got, conns = _fanout_over([[b":1\r\n"], []], timeout=0.2)
    assert got[0] == 1
    assert isinstance(got[1], BackendUnavailable)
    assert [c.disconnected for c in conns] == [False, True]
    assert time.monotonic() - start < 0.2 + 1.0  # generous bound: one server_timeout


def test_sockets_of_other_types_take_the_blocking_exchange(
    servers: list[RedisServerProcess], key_prefix: str
) -> None:
    # TLS sockets are not plain sockets: their exchange stays redis-py's own (blocking, with
    # the server_timeout as socket timeout), NOSCRIPT fallback included.
    import redis

    from dsprims.backends.redis import RedisBackend

    class WrappedSocket(socket.socket):
        pass

    class WrappedConnection(redis.Connection):
        def _connect(self) -> socket.socket:
            sock = super()._connect()  # type: ignore[no-untyped-call]
            timeout = sock.gettimeout()
            wrapped = WrappedSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
            wrapped.settimeout(timeout)
            return wrapped

    def client(port: int, **kw: Any) -> redis.Redis:
        pool = redis.ConnectionPool(port=port, connection_class=WrappedConnection, **kw)
        return redis.Redis(connection_pool=pool)

    made = [RedisBackend(client(servers[0].port)), *(backend_from_url(s.url) for s in servers[1:])]
    made[1] = RedisBackend(client(servers[1].port, decode_responses=True))
    lock = Redlock("wrapped", backends=made, prefix=key_prefix, auto_renew=False)
    for b in made:
        b.client.script_flush()
    lease = lock.acquire(timeout=1)
    conn = lock._redlock_store.servers._idle[0][0]
    assert type(conn._sock) is WrappedSocket
    assert _held_on(made, key_prefix, "wrapped") == [True, True, True]
    lease.release()
    assert _held_on(made, key_prefix, "wrapped") == [False, False, False]
    lock.close()
    for b in made:
        b.client.close()


async def test_async_redlock_falls_back_to_eval(
    servers: list[RedisServerProcess], key_prefix: str
) -> None:
    abackends = [async_backend_from_url(s.url) for s in servers]
    sync = [backend_from_url(s.url) for s in servers]
    lock = AsyncRedlock("ans", backends=abackends, prefix=key_prefix, auto_renew=False)
    try:
        await (await lock.acquire()).release()
        for b in sync:
            b.client.script_flush()
        lease = await lock.acquire(timeout=0)
        assert _held_on(sync, key_prefix, "ans") == [True, True, True]
        await lease.release()
        assert _held_on(sync, key_prefix, "ans") == [False, False, False]
    finally:
        await lock.aclose()
        for ab in abackends:
            await ab.aclose()
        for b in sync:
            b.close()


_REPLIES = st.one_of(
    st.integers(1, 2**53),  # granted: the token
    st.tuples(st.integers(-1, 10**7), st.sampled_from([b"", b"0123456789abcdef"])).map(list),
    st.just(BackendUnavailable("down")),
)


@given(st.lists(_REPLIES, min_size=1, max_size=5), st.floats(0, 2.0))
def test_outcome_fast_path_agrees_with_the_core(replies: list[Any], elapsed: float) -> None:
    import redis

    from dsprims.backends.redis import RedisBackend
    from dsprims.locks.redis import _Scripts

    lock = Redlock(
        "o", backends=[RedisBackend(redis.Redis(port=1)) for _ in replies], ttl=1.0
    )  # never connected: only the plan is used
    decisions = [None if isinstance(r, Exception) else _Scripts.acquire_result(r) for r in replies]
    expected = quorum_outcome(decisions, elapsed, 1.0, 0.01)
    got = lock._redlock_store.plan.outcome(replies, elapsed)
    if expected.granted:
        assert got == expected
    else:
        assert not got.granted
        assert (got.wait_us < 0) == (expected.wait_us < 0)
        assert got.wait_us >= expected.wait_us


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_never_uses_the_parents_connections(
    backends: list[Any], key_prefix: str
) -> None:
    lock = Redlock("fork", backends=backends, prefix=key_prefix, auto_renew=False)
    lock.acquire().release()
    idle = lock._redlock_store.servers._idle
    parent_conns = [c for kept in idle for c in kept]
    assert len(parent_conns) == 3
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        code = 1
        try:
            if not any(idle):
                lock.acquire(timeout=2).release()
                fresh = [c for kept in idle for c in kept]
                code = 0 if fresh and all(c not in parent_conns for c in fresh) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    lock.acquire(timeout=2).release()  # the parent's connections still work
    assert [c for kept in idle for c in kept] == parent_conns
    lock.close()


def _until_servers_close_idle_connections(backends: list[Any]) -> None:
    """Set the servers' idle ``timeout`` to 1 s until they closed the connections that last ran
    a script (the lock's)."""
    ours = [
        {c["id"] for c in b.client.client_list() if c["cmd"] in ("eval", "evalsha")}
        for b in backends
    ]
    assert all(ours)
    try:
        for b in backends:
            b.client.config_set("timeout", 1)
        deadline = time.monotonic() + 15
        # Until every server closed the connections it had (ours among them).
        while any(
            ids & {c["id"] for c in b.client.client_list()}
            for ids, b in zip(ours, backends, strict=True)
        ):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        for b in backends:
            b.client.config_set("timeout", 0)


def test_connections_the_servers_closed_while_idle_are_replaced(
    backends: list[Any], key_prefix: str
) -> None:
    # Servers with an idle `timeout` close the lock's connections between uses; the next
    # round must not lose their votes (try_acquire would return None with no retries).
    lock = Redlock("idle", backends=backends, prefix=key_prefix, auto_renew=False)
    lock.acquire().release()
    _until_servers_close_idle_connections(backends)
    lease = lock.try_acquire()
    assert lease is not None
    assert _held_on(backends, key_prefix, "idle") == [True, True, True]
    lease.release()
    lock.close()


async def test_async_connections_the_servers_closed_while_idle_are_replaced(
    servers: list[RedisServerProcess], backends: list[Any], key_prefix: str
) -> None:
    abackends = [async_backend_from_url(s.url) for s in servers]
    lock = AsyncRedlock("aidle", backends=abackends, prefix=key_prefix, auto_renew=False)
    try:
        await (await lock.acquire()).release()
        await asyncio.to_thread(_until_servers_close_idle_connections, backends)
        await asyncio.sleep(0.05)  # lets the event loop read the end of each stream
        lease = await lock.try_acquire()
        assert lease is not None
        assert _held_on(backends, key_prefix, "aidle") == [True, True, True]
        await lease.release()
    finally:
        await lock.aclose()
        for ab in abackends:
            await ab.aclose()


def test_resp3_clients(servers: list[RedisServerProcess], key_prefix: str) -> None:
    # Connections made from RESP3 clients (HELLO 3 in their handshake): the fan-out's own
    # reply parsing reads their replies too, queued replies (arrays) included.
    import redis

    from dsprims.backends.redis import RedisBackend

    made = [RedisBackend(redis.Redis(port=s.port, protocol=3)) for s in servers]
    lock = Redlock("r3", backends=made, prefix=key_prefix, auto_renew=False)
    holder = lock.acquire()
    assert lock.try_acquire() is None  # every server answers with its queued-reply array
    holder.extend()
    holder.release()
    second = lock.acquire(timeout=1)
    assert second.token > holder.token
    second.release()
    lock.close()
    for b in made:
        b.client.close()
