"""The asyncio hot path (``dsprims.locks._direct.AsyncDirect``) is cancellation-safe by itself.

A direct call writes its command and reads the reply from the connection's stream with no task
of its own; a cancellation hands the rest of the exchange to a background task that the lock's
``leave`` waits for. The first tests drive the path over a scripted connection, byte by byte,
so that every await point is hit deterministically; the last ones cancel real acquires and
releases at every event-loop step and check that nothing is left behind in Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from dsprims import async_backend_from_url
from dsprims.locks import AsyncRedisLock, _direct
from dsprims.locks._direct import AsyncDirect, parse_reply
from tests.locks import hand_over, leftover_keys

REPLY = b"*2\r\n:250\r\n$16\r\n0123456789abcdef\r\n"
PARSED = [250, b"0123456789abcdef"]
PUSH = b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nx\r\n"


class _Transport:
    def __init__(self) -> None:
        self.closing = False

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0


class _Writer:
    def __init__(self, conn: FakeConnection) -> None:
        self.transport = _Transport()
        self.conn = conn

    def write(self, data: bytes) -> None:
        self.conn.written.append(data)
        if self.conn.server is not None:
            self.conn.server(self.conn, data)


class FakeConnection:
    """Just what AsyncDirect uses of a redis.asyncio connection, with a scripted server.

    ``server(conn, command)`` (optional) answers each command by feeding the stream; without
    it the test feeds ``conn._reader`` itself. ``read_response`` stands for redis-py's parser:
    it skips RESP3 push messages (recording them) and returns the next reply.
    """

    health_check_interval = 0
    host = "fake"
    port = 0

    def __init__(
        self,
        *,
        timeout: float | None = None,
        retries: int = 0,
        server: Callable[[FakeConnection, bytes], None] | None = None,
    ) -> None:
        self.socket_timeout = timeout
        self.retry = Retry(NoBackoff(), retries)
        self.server = server
        self.written: list[bytes] = []
        self.pushes: list[Any] = []
        self.disconnects = 0
        self._reader: asyncio.StreamReader | None = asyncio.StreamReader()
        self._writer: _Writer | None = _Writer(self)

    async def disconnect(self, nowait: bool = False) -> None:
        self.disconnects += 1
        self._reader = self._writer = None

    async def send_packed_command(self, data: list[bytes]) -> None:
        if self._writer is None:  # reconnect
            self._reader, self._writer = asyncio.StreamReader(), _Writer(self)
        self._writer.write(b"".join(data))

    async def read_response(self) -> Any:
        assert self._reader is not None
        buf = b""
        while True:
            try:
                if buf[:1] == b">":
                    push, end = parse_reply(b"*" + buf[1:], 0)
                    self.pushes.append(push)
                    buf = buf[end:]
                    continue
                reply, end = parse_reply(buf, 0)
            except _direct.Incomplete:
                more = await self._reader.read(4096)
                if not more:
                    raise rexc.ConnectionError("closed") from None
                buf += more
                continue
            assert end == len(buf)
            if isinstance(reply, Exception):
                raise reply
            return reply


class FakePool:
    max_connections = 0  # keeps no connection: every call borrows and releases

    def __init__(self, *conns: FakeConnection) -> None:
        self.conns = list(conns)
        self.released: list[FakeConnection] = []

    async def get_connection(self) -> FakeConnection:
        return self.conns.pop(0)

    async def release(self, conn: FakeConnection) -> None:
        self.released.append(conn)


def _answer(*replies: bytes) -> Callable[[FakeConnection, bytes], None]:
    """A server that answers the n-th command with ``replies[n]`` (b"" closes the stream)."""
    queue = list(replies)

    def server(conn: FakeConnection, command: bytes) -> None:
        assert conn._reader is not None
        reply = queue.pop(0)
        if reply:
            conn._reader.feed_data(reply)
        else:
            conn._reader.feed_eof()

    return server


async def _settled() -> None:
    while _direct._BACKGROUND:
        await asyncio.gather(*list(_direct._BACKGROUND), return_exceptions=True)


async def test_a_reply_in_pieces_survives_a_cancellation_at_every_point() -> None:
    for cut in range(len(REPLY) + 1):
        conn = FakeConnection()
        pool = FakePool(conn)
        direct = AsyncDirect(pool)
        inflight: dict[str, asyncio.Future[Any]] = {}
        call = asyncio.ensure_future(direct.call(b"CMD", inflight, "h"))
        await asyncio.sleep(0)  # sent; the reply is awaited
        assert conn.written == [b"CMD"]
        assert conn._reader is not None
        if cut:
            conn._reader.feed_data(REPLY[:cut])
            await asyncio.sleep(0)  # the call reads what came
        call.cancel()
        try:
            assert await call == PARSED  # the whole reply came before the cancellation
            assert cut == len(REPLY)
            assert "h" not in inflight
        except asyncio.CancelledError:
            assert cut < len(REPLY)
            conn._reader.feed_data(REPLY[cut:])
            assert await inflight.pop("h") == PARSED  # the rest is read in the background
        # A complete reply: the connection goes back as it is, never disconnected.
        assert pool.released == [conn]
        assert conn.disconnects == 0
        assert conn._reader.exception() is None


async def test_a_cancellation_before_the_first_step_sends_nothing() -> None:
    conn = FakeConnection()
    inflight: dict[str, asyncio.Future[Any]] = {}
    call = asyncio.ensure_future(AsyncDirect(FakePool(conn)).call(b"CMD", inflight, "h"))
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert conn.written == []
    assert inflight == {}


async def test_a_push_message_ahead_of_the_reply_goes_to_redis_py_in_order() -> None:
    for pieces in ([PUSH + b":7\r\n"], [PUSH, b":7\r\n"], [PUSH[:3], PUSH[3:] + b":7\r\n"]):
        conn = FakeConnection()
        pool = FakePool(conn)
        call = asyncio.ensure_future(AsyncDirect(pool).call(b"CMD"))
        await asyncio.sleep(0)
        assert conn._reader is not None
        for piece in pieces:
            conn._reader.feed_data(piece)
            await asyncio.sleep(0)
        assert await call == 7
        assert conn.pushes == [[b"message", b"c", b"x"]]
        assert conn.written == [b"CMD"]  # read, never sent again
        assert pool.released == [conn]
        assert conn.disconnects == 0


async def test_bytes_after_a_reply_never_reach_the_next_call() -> None:
    conn = FakeConnection(server=_answer(b":1\r\n:2\r\n"))
    pool = FakePool(conn)
    with pytest.raises(rexc.InvalidResponse):
        await AsyncDirect(pool).call(b"CMD")
    assert conn.disconnects == 1
    assert pool.released == [conn]
    # A push message after the reply is no error, but the connection is dropped all the same.
    conn = FakeConnection(server=_answer(b":1\r\n" + PUSH))
    assert await AsyncDirect(FakePool(conn)).call(b"CMD") == 1
    assert conn.disconnects == 1


async def test_error_replies_keep_the_connection_or_follow_the_retry_policy() -> None:
    conn = FakeConnection(server=_answer(b"-NOSCRIPT No matching script.\r\n"))
    with pytest.raises(rexc.NoScriptError):
        await AsyncDirect(FakePool(conn)).call(b"CMD")
    assert conn.disconnects == 0  # a complete error reply: the connection stays good
    # LOADING is a connection error to redis-py: disconnect, and retry under the policy.
    conn = FakeConnection(retries=1, server=_answer(b"-LOADING busy\r\n", b":3\r\n"))
    assert await AsyncDirect(FakePool(conn)).call(b"CMD") == 3
    assert conn.written == [b"CMD", b"CMD"]
    assert conn.disconnects == 1
    conn = FakeConnection(retries=0, server=_answer(b"-LOADING busy\r\n"))
    with pytest.raises(rexc.BusyLoadingError):
        await AsyncDirect(FakePool(conn)).call(b"CMD")


async def test_a_closed_connection_is_retried_by_the_policy() -> None:
    conn = FakeConnection(retries=1, server=_answer(b"", b":5\r\n"))
    pool = FakePool(conn)
    assert await AsyncDirect(pool).call(b"CMD") == 5
    assert conn.written == [b"CMD", b"CMD"]
    assert conn.disconnects == 1
    assert pool.released == [conn]
    conn = FakeConnection(retries=0, server=_answer(b""))
    with pytest.raises(rexc.ConnectionError):
        await AsyncDirect(FakePool(conn)).call(b"CMD")
    assert conn.disconnects >= 1


async def test_a_read_past_the_socket_timeout_fails_and_drops_the_connection() -> None:
    silent = FakeConnection(timeout=0.05)
    answered = FakeConnection(timeout=0.05, server=_answer(b":1\r\n"))
    direct_silent, direct_answered = AsyncDirect(FakePool(silent)), AsyncDirect(FakePool(answered))
    start = time.monotonic()
    with pytest.raises(rexc.TimeoutError):
        await direct_silent.call(b"CMD")
    assert time.monotonic() - start < 0.05 + 1.0  # a correctness bound, not a speed claim
    assert silent.disconnects >= 1
    assert await direct_answered.call(b"CMD") == 1  # other reads are not touched
    assert answered.disconnects == 0
    # A timeout in the background rest of a cancelled call drops the connection too.
    silent = FakeConnection(timeout=0.05)
    inflight: dict[str, asyncio.Future[Any]] = {}
    call = asyncio.ensure_future(AsyncDirect(FakePool(silent)).call(b"CMD", inflight, "h"))
    await asyncio.sleep(0)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    with pytest.raises(rexc.TimeoutError):
        await inflight["h"]
    assert silent.disconnects >= 1
    await _settled()


async def test_a_shorter_timeout_is_kept_while_a_longer_read_waits() -> None:
    # One pool's reads share a deadline timer; a connection whose timeout is shorter than the
    # one armed (e.g. relaxed for a maintenance on the other) still times out on time.
    slow, short = FakeConnection(timeout=30.0), FakeConnection(timeout=0.05)
    direct = AsyncDirect(FakePool(slow, short))
    waiting = asyncio.ensure_future(direct.call(b"CMD"))
    await asyncio.sleep(0)
    start = time.monotonic()
    with pytest.raises(rexc.TimeoutError):
        await direct.call(b"CMD")
    assert time.monotonic() - start < 0.05 + 1.0  # a correctness bound, not a speed claim
    assert not waiting.done()
    assert slow._reader is not None
    slow._reader.feed_data(b":9\r\n")
    assert await waiting == 9


def test_parse_reply_refuses_what_is_not_a_reply() -> None:
    for raw in (b":12a\r\n", b"\r\n", b"*x\r\n", b"%1\r\n"):
        with pytest.raises(rexc.InvalidResponse):
            parse_reply(raw, 0)
    error, _ = parse_reply(b"-LOADING Redis is loading\r\n", 0)
    assert isinstance(error, rexc.BusyLoadingError)


# -- real server: cancel at every event-loop step ----------------------------------------------


async def _steps(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def _lock_on(
    redis_server: Any, name: str, prefix: str, socket_timeout: float | None = None
) -> AsyncIterator[tuple[AsyncRedisLock, Any]]:
    """An AsyncRedisLock on a URL-made client (with ``socket_timeout``) and a sync
    admin client to look at the keys."""
    backend = async_backend_from_url(redis_server.url, timeout=socket_timeout)
    sync = redis_server.client()
    try:
        yield AsyncRedisLock(name, backend=backend, prefix=prefix, auto_renew=False), sync
    finally:
        sync.close()
        await backend.aclose()


async def _nothing_left(lock: AsyncRedisLock, sync: Any, prefix: str) -> None:
    """No lock state but the fencing counter, and the next acquire succeeds at once."""
    await lock.settle()
    assert leftover_keys(sync, prefix) == []
    lease = await lock.acquire(timeout=0)
    await lease.release()


def _until(check: Callable[[], bool]) -> None:
    # Blocks the event loop on purpose: the reply then waits in the socket, unread.
    deadline = time.monotonic() + 5.0
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.001)


@pytest.mark.redis
async def test_an_acquire_cancelled_at_every_step_leaves_nothing(
    redis_server: Any, key_prefix: str
) -> None:
    async with _lock_on(redis_server, "steps", key_prefix) as (lock, sync):
        key = f"{key_prefix}:{{steps}}:lock"

        def counter() -> int:  # the fencing counter: it moves with every grant
            return int(sync.hget(key, "f") or 0)

        await (await lock.acquire()).release()  # a ready connection: the first step sends
        seen = set()
        for steps in range(8):
            for after_grant in (False, True):
                before = counter()
                task = asyncio.ensure_future(lock.acquire())
                await _steps(steps)
                if after_grant and steps:
                    _until(lambda: counter() > before)  # noqa: B023 - granted; reply unread
                task.cancel()
                try:
                    lease = await task
                except asyncio.CancelledError:
                    seen.add("granted, then cancelled" if counter() > before else "cancelled")
                else:
                    seen.add("granted")
                    await lease.release()
                await _nothing_left(lock, sync, key_prefix)
        assert {"cancelled", "granted, then cancelled"} <= seen


@pytest.mark.redis
async def test_a_queued_acquire_cancelled_at_every_step_leaves_nothing(
    redis_server: Any, key_prefix: str
) -> None:
    queue = f"{key_prefix}:{{qsteps}}:q"
    holder_key = f"{key_prefix}:{{qsteps}}:lock"
    async with _lock_on(redis_server, "qsteps", key_prefix) as (lock, sync):
        for steps in range(10):
            for after_queued in (False, True):
                holder = await lock.acquire()
                task = asyncio.ensure_future(lock.acquire())
                await _steps(steps)
                if after_queued and steps:
                    _until(lambda: bool(sync.exists(queue)))
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                await lock.settle()
                assert leftover_keys(sync, key_prefix) == [holder_key.encode()]  # the holder's
                await holder.release()
                await _nothing_left(lock, sync, key_prefix)


@pytest.mark.redis
async def test_a_release_cancelled_at_every_step_keeps_the_connection_clean(
    redis_server: Any, key_prefix: str
) -> None:
    key = f"{key_prefix}:{{rsteps}}:lock"
    async with _lock_on(redis_server, "rsteps", key_prefix) as (lock, sync):
        for steps in range(6):
            lease = await lock.acquire()
            task = asyncio.ensure_future(lease.release())
            await _steps(steps)
            task.cancel()
            try:
                await task
                assert lease.released
            except asyncio.CancelledError:
                await _settled()  # the release's reply is read in the background
                if sync.hget(key, "o") is not None:  # cancelled before it was sent
                    await lease.release()
            assert int(sync.hget(key, "f")) == lease.token  # no grant since
            await _nothing_left(lock, sync, key_prefix)


@pytest.mark.redis
async def test_a_cancelled_acquire_is_taken_back_after_its_grant_on_a_stalled_server(
    redis_server: Any, key_prefix: str
) -> None:
    # The clean-up waits for the cut-off acquire's reply (read in the background) before it
    # sends its own command, which could otherwise overtake the grant it must undo.
    async with _lock_on(redis_server, "stall", key_prefix, socket_timeout=10.0) as (lock, sync):
        await (await lock.acquire()).release()
        for _ in range(5):
            with redis_server.frozen_for_a_while():
                task = asyncio.ensure_future(lock.acquire())
                await _steps(1)  # sent to the stalled server
                task.cancel()
                await asyncio.sleep(0.05)  # the clean-up runs meanwhile (and must wait)
            with pytest.raises(asyncio.CancelledError):
                await task
            await _nothing_left(lock, sync, key_prefix)


@pytest.mark.redis
async def test_replies_read_directly_or_by_redis_py_agree(
    redis_server: Any, key_prefix: str
) -> None:
    # The direct reader returns bytes whatever the client decodes; redis-py's path (taken on a
    # disconnected connection) returns str with decode_responses: the lock handles both,
    # including the queued reply ([wait, ticket]) and the wake-up of the queued waiter.
    from redis.asyncio import Redis

    from dsprims import AsyncRedisBackend

    for decode in (True, False):
        client = Redis(host="127.0.0.1", port=redis_server.port, decode_responses=decode)
        try:
            lock = AsyncRedisLock(
                f"adec{decode}", backend=AsyncRedisBackend(client), prefix=key_prefix
            )
            assert lock._store._direct is not None  # type: ignore[attr-defined]
            for disconnected in (False, True):
                for conn in _direct.stack_of(client.connection_pool) if disconnected else ():
                    await conn.disconnect()  # the next calls reconnect through redis-py
                await hand_over(lock)
            await lock.settle()
        finally:
            await client.aclose()


@pytest.mark.redis
async def test_a_give_up_waits_for_a_connection_when_the_pool_has_none_to_spare(
    redis_server: Any, key_prefix: str
) -> None:
    # Two connections: the waiter's BLPOP holds one, another user of the client the other.
    # The waiter's clean-up then finds the pool exhausted: it must wait, not leave its queue
    # entry behind.
    from redis.asyncio import Redis

    from dsprims import AsyncRedisBackend

    client = Redis(host="127.0.0.1", port=redis_server.port, max_connections=2)
    sync = redis_server.client()
    try:
        lock = AsyncRedisLock("spare", backend=AsyncRedisBackend(client), prefix=key_prefix)
        holder = await lock.acquire()
        waiter = asyncio.ensure_future(lock.acquire())
        other = asyncio.ensure_future(client.blpop([f"{key_prefix}:elsewhere"], timeout=1))
        for _ in range(1000):  # until the waiter queued and both BLPOPs hold a connection
            if (
                sync.exists(f"{key_prefix}:{{spare}}:q")
                and not client.connection_pool.can_get_connection()
            ):
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        assert not client.connection_pool.can_get_connection()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert await other is None
        await lock.settle()
        assert leftover_keys(sync, key_prefix) == [f"{key_prefix}:{{spare}}:lock".encode()]
        await holder.release()
        await _nothing_left(lock, sync, key_prefix)
    finally:
        sync.close()
        await client.aclose()


def test_packed_commands_match_redis_py_packing() -> None:
    import redis

    from dsprims.locks._direct import pack_head, pack_tail

    conn: Any = redis.Connection()  # type: ignore[no-untyped-call]  # only its packer is used
    cases: list[list[str | bytes]] = [[], ["a" * 32], ["o" * 32, "", b"1 2 3"]]
    cases.append([str(i) for i in range(12)])
    for args in cases:
        packed = pack_head("f" * 40, [b"k{x}"], len(args)) + pack_tail(args)
        assert packed == b"".join(conn.pack_command("EVALSHA", "f" * 40, 1, "k{x}", *args))


@pytest.mark.redis
async def test_real_resp3_invalidations_ahead_of_lock_replies_reach_redis_py(
    redis_server: Any, key_prefix: str
) -> None:
    # A RESP3 client with client-side caching (CLIENT TRACKING) gets an invalidation push
    # whenever another client writes a key it read. Pushed between two commands, it sits in
    # the stream ahead of the lock's next reply: the direct reader must hand it to redis-py's
    # parser (which calls the client's handler) and still read the reply that follows.
    from redis.asyncio import ConnectionPool, Redis

    from dsprims import AsyncRedisBackend

    pool = ConnectionPool(
        host="127.0.0.1", port=redis_server.port, protocol=3, max_connections=1
    )  # one connection: the tracking one is the lock's
    client = Redis(connection_pool=pool)
    sync = redis_server.client()
    pushes: list[Any] = []

    async def record(push: Any) -> None:
        pushes.append(push)

    try:
        conn = await _direct._borrow(pool)()  # redis-py before 5.3 wants a command name
        if hasattr(conn._parser, "set_invalidation_push_handler"):
            conn._parser.set_invalidation_push_handler(record)
        else:  # redis-py 5.0: one handler for every push, called without await
            conn._parser.set_push_handler(pushes.append)
        # NOLOOP: the lock script's own writes to keys it read invalidate nothing.
        await conn.send_command("CLIENT", "TRACKING", "ON", "NOLOOP")
        assert await conn.read_response() in (b"OK", "OK")
        await pool.release(conn)
        lock = AsyncRedisLock("push", backend=AsyncRedisBackend(client), prefix=key_prefix)
        assert lock._store._direct is not None  # type: ignore[attr-defined]
        watched = f"{key_prefix}:watched"
        tokens = []
        for round_ in range(3):
            assert await client.get(watched) == (str(round_ - 1).encode() if round_ else None)
            sync.set(watched, round_)  # the server pushes an invalidation to our connection
            await asyncio.sleep(0.05)  # the push lands in the stream, unread
            lease = await lock.acquire(timeout=0)
            assert len(pushes) == round_ + 1  # handled by redis-py, before the reply was used
            tokens.append(lease.token)
            await lease.release()
        # One push per round for three rounds: the tracking connection was kept throughout.
        assert pushes == [[b"invalidate", [watched.encode()]]] * 3
        assert tokens == sorted(set(tokens))  # every acquire got its own reply, in order
        assert await client.get(watched) == b"2"  # the stream is still in step
        sync.delete(watched)
        await _nothing_left(lock, sync, key_prefix)
    finally:
        sync.close()
        await client.aclose()
        await pool.disconnect()  # a pool passed in is the caller's to close
