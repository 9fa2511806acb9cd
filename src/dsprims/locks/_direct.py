"""The lock scripts' hot path: one pre-packed EVALSHA on a connection kept ready, per call.

``redis.Redis.execute_command`` costs several times a loopback round trip in client CPU: it
borrows a connection from the pool (a lock, a readiness ``poll`` system call, metrics), packs the
command, retries, parses and returns the connection (another lock, more metrics). The uncontended
lock cycle is two such calls, so that overhead decided its speed. Here the scripts' commands
are packed once into RESP bytes (a constant head per script plus the few per-call arguments) and
sent on a connection taken from a small stack of connections borrowed from the client's own pool:

* the connections stay the pool's: they are counted as in use, ``client.close()`` disconnects
  them, and one stack per pool is shared by every lock on that client (at most
  :data:`IDLE_PER_POOL` kept), so locks made per request borrow nothing for good; a blocking,
  custom (e.g. Sentinel) or small pool (fewer than :data:`MIN_POOL_FOR_IDLE` connections) keeps
  none, so the lock never holds a connection its other users may be waiting for: each call
  then borrows from and returns to the pool;
* a connection is reused as is only after a complete reply (an error reply included); any
  other failure disconnects it first (the next use reconnects), so a late or partial reply is
  never read by the next call (which is what the pool's readiness ``poll`` guards against);
* retries follow the connection's own ``retry`` policy, exactly as ``execute_command`` does
  (the failure handler disconnects, the next attempt reconnects);
* after ``os.fork`` the child forgets the stacks (the parent's sockets are never shared).

The asyncio path also reads the scripts' replies itself (:func:`parse_reply`, straight from the
connection's stream), which makes a call cancellation-safe without a task per call; see
:class:`AsyncDirect`.

It is used only where it is equivalent: a standalone ``redis.Redis`` (or ``redis.asyncio.Redis``)
whose ``execute_command`` is not overridden (in a subclass or on the instance), without a
single-connection client or client-side caching; everything else takes ``execute_command``.
redis-py's per-command metrics (OpenTelemetry) do not see these calls.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import threading
import weakref
from collections.abc import Sequence
from typing import Any

__all__ = [
    "AsyncDirect",
    "Direct",
    "async_direct",
    "direct",
    "fork_safe_stack",
    "pack_head",
    "pack_tail",
    "ready_writer",
    "stack_of",
]

#: Connections kept ready per pool (beyond those in flight).
IDLE_PER_POOL = 2
#: Smallest ``max_connections`` of a pool from which connections are kept ready.
MIN_POOL_FOR_IDLE = 32


class _Stack(list[Any]):
    """The connections kept ready for one pool.

    It hangs off the pool itself (so it lives and dies with the pool: a registry keyed by the
    pool would keep it alive, since connections can refer back to their pool), and is tracked
    weakly for the fork hook.
    """


# By id: lists compare by content, so a WeakSet would merge the (equal) empty stacks.
_STACKS: weakref.WeakValueDictionary[int, _Stack] = weakref.WeakValueDictionary()
_ATTR = "_dsprims_lock_connections"
_CREATE = threading.Lock()


def fork_safe_stack() -> list[Any]:
    """A new, empty stack of ready connections that a forked child finds empty: the
    connections in it are the parent's sockets (the child makes its own; using them would mix
    both processes' replies)."""
    stack = _Stack()
    _STACKS[id(stack)] = stack
    return stack


def stack_of(pool: Any) -> list[Any]:
    """The stack of ready connections of ``pool`` (made on first use)."""
    stack = getattr(pool, _ATTR, None)
    if stack is None:
        with _CREATE:
            stack = getattr(pool, _ATTR, None)
            if stack is None:
                stack = fork_safe_stack()
                setattr(pool, _ATTR, stack)
    return stack


def _forget_after_fork() -> None:
    for stack in list(_STACKS.values()):
        stack.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def _bulk(item: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(item), item)


def pack_head(sha: str, keys: Sequence[bytes], nargs: int) -> bytes:
    """RESP for ``EVALSHA <sha> <numkeys> <keys...>`` of a command with ``nargs`` more
    arguments (the array header counts them)."""
    count = 3 + len(keys) + nargs
    parts = [b"*%d\r\n" % count, _bulk(b"EVALSHA"), _bulk(sha.encode()), _bulk(b"%d" % len(keys))]
    return b"".join(parts + [_bulk(k) for k in keys])


#: ``$<len>\r\n<arg>\r\n`` for n arguments: one formatting call per command tail.
_BULKS = [b"$%d\r\n%s\r\n" * n for n in range(9)]


def pack_tail(args: Sequence[str | bytes]) -> bytes:
    """RESP bulk strings of ``args`` (``str`` arguments are ASCII: secrets, tickets, numbers)."""
    if len(args) >= len(_BULKS):
        return b"".join(_bulk(a if isinstance(a, bytes) else a.encode()) for a in args)
    parts: list[int | bytes] = []
    for arg in args:
        data = arg if isinstance(arg, bytes) else arg.encode()
        parts.append(len(data))
        parts.append(data)
    return _BULKS[len(args)] % tuple(parts)


def _idle_cap(pool: Any, plain: type) -> int:
    limit = getattr(pool, "max_connections", 0) or 0
    return IDLE_PER_POOL if type(pool) is plain and limit >= MIN_POOL_FOR_IDLE else 0


def _borrow(pool: Any) -> Any:
    """``pool.get_connection`` as a call without arguments: redis-py before 5.3 requires the
    command name, later versions warn when it is given."""
    import inspect

    get = pool.get_connection
    try:
        first = next(iter(inspect.signature(get).parameters.values()), None)
    except (TypeError, ValueError):  # pragma: no cover - signature not introspectable
        first = None
    if first is not None and first.default is inspect.Parameter.empty:
        return functools.partial(get, "EVALSHA")
    return get


def _eligible(client: Any, base: Any) -> bool:
    pool = getattr(client, "connection_pool", None)
    return (
        pool is not None
        and getattr(client, "connection", None) is None
        and type(client).execute_command is base.execute_command
        and "execute_command" not in getattr(client, "__dict__", {})  # patched on the instance
        and getattr(pool, "cache", None) is None
    )


class Direct:
    """The sync hot path over one ``redis.Redis`` client's pool."""

    __slots__ = ("_borrow", "_cap", "_idle", "_pool")

    def __init__(self, pool: Any) -> None:
        import redis

        self._pool = pool
        self._borrow = _borrow(pool)
        self._cap = _idle_cap(pool, redis.ConnectionPool)
        self._idle = stack_of(pool)

    def call(self, packed: bytes) -> Any:
        """Send ``packed`` (one whole command) and return the parsed reply.

        Raises what ``execute_command`` raises (redis-py exceptions, untranslated).
        """
        idle = self._idle
        try:
            conn = idle.pop()
        except IndexError:
            conn = self._borrow()
        data = [packed]

        def exchange() -> Any:
            conn.send_packed_command(data)
            return conn.read_response()

        try:
            reply = conn.retry.call_with_retry(exchange, lambda _error: conn.disconnect())
        except BaseException as exc:
            from redis.exceptions import ResponseError

            if not isinstance(exc, ResponseError):
                # The reply may still be on its way: nobody may read this socket again.
                conn.disconnect()
            self._give(conn)
            raise
        self._give(conn)
        return reply

    def _give(self, conn: Any) -> None:
        should_reconnect = getattr(conn, "should_reconnect", None)
        if should_reconnect is not None and should_reconnect():
            conn.disconnect()
        if len(self._idle) < self._cap:
            self._idle.append(conn)
        else:
            self._pool.release(conn)


def direct(backend: Any) -> Direct | None:
    """The hot path for a :class:`~dsprims.RedisBackend`, or ``None`` where it would differ."""
    import redis

    client = backend.client
    if backend.is_cluster or not _eligible(client, redis.Redis):
        return None
    return Direct(client.connection_pool)


class _Deadlines:
    """The read deadlines of the direct calls in flight on one event loop.

    ``read_response`` arms a timer (``asyncio.timeout``) per read; here one timer per loop
    watches every read in flight and is re-armed lazily: back-to-back calls within the socket
    timeout arm about one timer per timeout period instead of one per call. A read past its
    deadline fails with :class:`_ReadTimeout` (set on its ``StreamReader``, which wakes it);
    its connection is then dropped, as redis-py does on a read timeout.
    """

    __slots__ = ("_loop", "_next", "_reads", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._reads: dict[asyncio.StreamReader, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._next = math.inf  # when the timer fires

    def start(self, reader: asyncio.StreamReader, timeout: float) -> None:
        when = self._loop.time() + timeout
        self._reads[reader] = when
        if when < self._next:  # rare: deadlines of one pool's reads come in order, unless
            self._arm(when)  # a connection's timeout changed (e.g. relaxed for maintenance)

    def stop(self, reader: asyncio.StreamReader) -> None:
        self._reads.pop(reader, None)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._check)
        self._next = when

    def _check(self) -> None:
        self._timer, self._next = None, math.inf
        reads = self._reads
        now = self._loop.time()
        for reader in [r for r, when in reads.items() if when <= now]:
            del reads[reader]
            reader.set_exception(_ReadTimeout())
        if reads:
            self._arm(min(reads.values()))


class _NoDeadline:
    """The deadlines of a read without a socket timeout: nothing to stop."""

    __slots__ = ()

    def stop(self, reader: asyncio.StreamReader) -> None:
        pass


_NO_DEADLINE = _NoDeadline()


class _ReadTimeout(Exception):
    """A direct read outlasted the connection's socket timeout."""


class Incomplete(Exception):
    """More bytes are needed to parse the reply."""


def parse_reply(buf: bytes, pos: int) -> tuple[Any, int]:
    """One RESP2/RESP3 value of the kinds the lock scripts reply with, from ``buf[pos:]``.

    Returns the value and the position after it; raises :class:`Incomplete` when ``buf`` ends
    first (so a reply read in pieces is parsed again from its start, never misread). Error
    replies come back as the exception redis-py would raise for them (not raised).
    """
    try:
        return _parse(buf, pos)
    except ValueError as exc:  # a number that is not one: not a reply of these scripts
        from redis.exceptions import InvalidResponse

        raise InvalidResponse(f"malformed reply: {exc}") from None


def _parse(buf: bytes, pos: int) -> tuple[Any, int]:
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise Incomplete
    kind, line, pos = buf[pos], buf[pos + 1 : end], end + 2
    if kind == 58:  # ':' integer
        return int(line), pos
    if kind == 36:  # '$' bulk string
        size = int(line)
        if size < 0:
            return None, pos
        if len(buf) < pos + size + 2:
            raise Incomplete
        return buf[pos : pos + size], pos + size + 2
    if kind == 42:  # '*' array
        count = int(line)
        if count < 0:
            return None, pos
        items = []
        for _ in range(count):
            item, pos = _parse(buf, pos)
            items.append(item)
        return items, pos
    if kind == 45:  # '-' error: the class redis-py's parsers pick (NOSCRIPT, LOADING, ...)
        from redis._parsers.base import BaseParser

        error: Exception = BaseParser.parse_error(line.decode(errors="replace"))  # type: ignore[no-untyped-call]
        return error, pos
    if kind in (43, 95):  # '+' status, '_' RESP3 null
        return (line if kind == 43 else None), pos
    from redis.exceptions import InvalidResponse

    raise InvalidResponse(f"unexpected reply type {chr(kind)!r}")


#: Bytes asked of the stream per read (the scripts' replies are a few dozen bytes).
READ_SIZE = 4096

# Background work of direct calls: the rest of a call whose caller was cancelled, clean-ups.
_BACKGROUND: set[asyncio.Future[Any]] = set()


def _settled(task: asyncio.Future[Any]) -> None:
    _BACKGROUND.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: a failure was already dealt with (connection dropped)


def _background(coro: Any) -> asyncio.Future[Any]:
    task: asyncio.Future[Any] = asyncio.ensure_future(coro)
    _BACKGROUND.add(task)
    task.add_done_callback(_settled)
    return task


class AsyncDirect:
    """The asyncio hot path over one ``redis.asyncio.Redis`` client's pool.

    A call is cancellation-safe by itself, with no task of its own on the common path: the
    command is written straight to a ready connection's transport, and the reply is read from
    the connection's ``StreamReader`` and parsed here (:func:`parse_reply`), so a cancellation
    that arrives while the reply is awaited loses nothing (the stream keeps unread bytes, the
    bytes read so far are handed on). The rest of the call -- reading the reply, giving the
    connection back -- then continues as a background task, which the caller may register
    (``inflight[handle]``) to wait for it: a cancelled acquire's grant lands before ``leave``
    takes it back. Anything off the common path (a connection to make or check, a buffered
    transport, a RESP3 push message ahead of the reply, a retry after a failed first attempt)
    runs redis-py's own exchange as one task the caller awaits through ``asyncio.shield``,
    with the same hand-over on cancellation.
    """

    __slots__ = ("_borrow", "_cap", "_deadlines", "_idle", "_pool")

    def __init__(self, pool: Any) -> None:
        import redis.asyncio

        self._pool = pool
        self._borrow = _borrow(pool)
        self._cap = _idle_cap(pool, redis.asyncio.ConnectionPool)
        self._idle = stack_of(pool)
        self._deadlines: _Deadlines | None = None

    async def call(
        self,
        packed: bytes,
        inflight: dict[str, asyncio.Future[Any]] | None = None,
        handle: str = "",
    ) -> Any:
        """Send ``packed`` (one whole command) and return the parsed reply.

        Raises what ``execute_command`` raises (redis-py exceptions, untranslated). If the
        caller is cancelled after the command may have been sent, the exchange finishes in the
        background and its task is stored in ``inflight[handle]`` (when ``inflight`` is given).
        """
        idle = self._idle
        conn = idle.pop() if idle else await self._borrow()
        reader = getattr(conn, "_reader", None)
        writer = ready_writer(conn)
        if reader is None or writer is None or conn.health_check_interval:
            # To connect, check health or queue behind buffered bytes: redis-py's exchange.
            return await self._guarded(self._exchange(conn, packed, None), inflight, handle)
        writer.write(packed)
        timeout = conn.socket_timeout
        deadlines: _Deadlines | _NoDeadline = _NO_DEADLINE
        if timeout is not None:
            loop = asyncio.get_running_loop()
            timed = self._deadlines
            if timed is None or timed._loop is not loop:
                timed = self._deadlines = _Deadlines(loop)
            timed.start(reader, timeout)
            deadlines = timed
        try:
            data = await reader.read(READ_SIZE)
        except asyncio.CancelledError:
            # The command is out and its reply on its way: read it in the background.
            task = _background(self._rest(conn, reader, packed, b"", deadlines))
            if inflight is not None:
                inflight[handle] = task
            raise
        except Exception as exc:  # an OSError of the transport, or _ReadTimeout
            deadlines.stop(reader)
            error = _read_error(conn, exc)
            return await self._guarded(self._exchange(conn, packed, error), inflight, handle)
        except BaseException:
            _background(self._drop(conn))
            raise
        if data[:1] == b">":  # a RESP3 push message ahead of the reply
            deadlines.stop(reader)
            await self._unread_push(conn, reader, data)
            return await self._guarded(self._exchange(conn, packed, _SENT), inflight, handle)
        try:
            reply, end = parse_reply(data, 0)
        except Incomplete:  # a reply in pieces (rare: it is a few dozen bytes), or none: closed
            coro = self._rest(conn, reader, packed, data, deadlines)
            return await self._guarded(coro, inflight, handle)
        except Exception:
            deadlines.stop(reader)
            await self._drop(conn)
            raise
        deadlines.stop(reader)
        return await self._settle(conn, reader, packed, reply, data, end, inflight, handle)

    async def _rest(
        self,
        conn: Any,
        reader: asyncio.StreamReader,
        packed: bytes,
        data: bytes,
        deadlines: _Deadlines | _NoDeadline,
    ) -> Any:
        """Finish reading a reply begun in ``data`` from ``reader`` (the stream the command
        went out with, even if ``conn`` was disconnected since) under the same deadline, and
        settle it."""
        from redis.exceptions import ConnectionError as RedisConnectionError

        push = False
        try:
            while True:
                try:
                    reply, end = parse_reply(data, 0)
                    break
                except Incomplete:
                    pass
                more = await reader.read(READ_SIZE)
                if not more:
                    raise _read_error(conn, None)
                if not data and more[:1] == b">":  # a push message ahead of the reply
                    push = True
                    break
                data += more
        except Exception as exc:
            deadlines.stop(reader)
            if isinstance(exc, _ReadTimeout | OSError | RedisConnectionError):
                return await self._exchange(conn, packed, _read_error(conn, exc))  # retried
            await self._drop(conn)
            raise
        except BaseException:
            deadlines.stop(reader)
            await self._drop(conn)
            raise
        deadlines.stop(reader)
        if push:
            await self._unread_push(conn, reader, more)  # right after the read (see _unread)
            return await self._exchange(conn, packed, _SENT)
        return await self._settle(conn, reader, packed, reply, data, end)

    async def _unread_push(self, conn: Any, reader: asyncio.StreamReader, data: bytes) -> None:
        """Hand a RESP3 push message (e.g. a maintenance notification) that came ahead of the
        reply, in ``data`` just read, back to the stream for redis-py's parser, which handles
        it and then reads the reply; call it before anything else is awaited."""
        if not _unread(reader, data):
            await self._drop(conn)
            from redis.exceptions import InvalidResponse

            raise InvalidResponse("a push message too long to hand over ahead of a reply")

    async def _settle(
        self,
        conn: Any,
        reader: asyncio.StreamReader,
        packed: bytes,
        reply: Any,
        data: bytes,
        end: int,
        inflight: dict[str, asyncio.Future[Any]] | None = None,
        handle: str = "",
    ) -> Any:
        """Return (or raise) ``reply``, parsed from ``data[:end]``; ``conn`` is kept only if
        nothing else was read and no read timeout fired meanwhile."""
        if isinstance(reply, Exception):
            from redis.exceptions import ConnectionError as RedisConnectionError

            if isinstance(reply, RedisConnectionError):  # e.g. LOADING: retried like redis-py
                return await self._guarded(self._exchange(conn, packed, reply), inflight, handle)
        if end != len(data) or reader.exception() is not None:
            # Never reuse a connection with bytes beyond the reply or a timeout that fired as
            # the reply came in. A push message after the reply is no error (its connection is
            # dropped all the same); anything else is.
            await self._drop(conn)
            if data[end : end + 1] not in (b"", b">"):
                from redis.exceptions import InvalidResponse

                raise InvalidResponse("unexpected bytes after a reply")
        elif not self._keep(conn):
            await self._release(conn)
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def _guarded(
        self, coro: Any, inflight: dict[str, asyncio.Future[Any]] | None, handle: str
    ) -> Any:
        # The exchange runs as its own task: a cancellation of the caller leaves it running
        # (redis.asyncio disconnects a connection whose read is cancelled) and hands it over.
        task = _background(coro)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if inflight is not None:
                inflight[handle] = task
            raise

    async def _exchange(self, conn: Any, packed: bytes, first: object) -> Any:
        """redis-py's exchange under the connection's retry policy.

        ``first``: ``None``, or :data:`_SENT` (the command is out: read its reply first), or
        the failure of a first attempt made on the direct path (replayed, so that the policy
        counts it and disconnects, exactly as if ``call_with_retry`` had seen it).
        """
        data = [packed]

        async def attempt() -> Any:
            nonlocal first
            step, first = first, None
            if step is _SENT:
                return await conn.read_response()
            if isinstance(step, BaseException):
                raise step
            await conn.send_packed_command(data)
            return await conn.read_response()

        async def fail(_error: BaseException) -> None:
            await conn.disconnect()

        try:
            reply = await conn.retry.call_with_retry(attempt, fail)
        except BaseException as exc:
            from redis.exceptions import ResponseError

            if isinstance(exc, ResponseError):
                await self._give(conn)
            else:
                # The reply may still be on its way: nobody may read this connection again.
                await self._drop(conn)
            raise
        await self._give(conn)
        return reply

    async def _drop(self, conn: Any) -> None:
        try:
            await conn.disconnect(nowait=True)
        finally:
            await self._pool.release(conn)

    def _keep(self, conn: Any) -> bool:
        """Put ``conn`` back on the stack if there is room and it needs nothing done."""
        if len(self._idle) >= self._cap:
            return False
        should_reconnect = getattr(conn, "should_reconnect", None)
        if should_reconnect is not None and should_reconnect():
            return False
        self._idle.append(conn)
        return True

    async def _give(self, conn: Any) -> None:
        """Keep ``conn`` (see :meth:`_keep`) or return it to the pool."""
        if not self._keep(conn):
            await self._release(conn)

    async def _release(self, conn: Any) -> None:
        """Return ``conn`` to the pool, disconnected first if it asks to reconnect."""
        should_reconnect = getattr(conn, "should_reconnect", None)
        if should_reconnect is not None and should_reconnect():
            await conn.disconnect()
        await self._pool.release(conn)


def ready_writer(conn: Any) -> asyncio.StreamWriter | None:
    """The stream writer of a ``redis.asyncio`` connection when a small command can be written
    to it at once (connected, its transport open with nothing buffered), else ``None``.

    Writing there directly skips ``send_packed_command``, which wraps every write in
    ``asyncio.wait_for`` (a task per command) on a connection with a socket timeout.
    """
    writer: asyncio.StreamWriter | None = getattr(conn, "_writer", None)
    if writer is None or writer.transport.is_closing() or writer.transport.get_write_buffer_size():
        return None
    return writer


#: ``AsyncDirect._exchange``: the command was already sent.
_SENT = object()


def _unread(reader: asyncio.StreamReader, data: bytes) -> bool:
    """Put ``data``, just read, back at the head of ``reader`` (for redis-py's parser).

    Possible only when that read drained the stream's buffer (it returned less than it asked
    for): then feeding the bytes again restores their order.
    """
    if len(data) >= READ_SIZE or reader.at_eof() or reader.exception() is not None:
        return False
    reader.feed_data(data)
    return True


def _read_error(conn: Any, exc: BaseException | None) -> Exception:
    """The redis-py exception ``read_response`` raises for a failed read (``exc``: what the
    stream raised; ``None``: end of stream)."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    where = f"{getattr(conn, 'host', '?')}:{getattr(conn, 'port', '?')}"
    if exc is None:
        return RedisConnectionError("Connection closed by server.")
    if isinstance(exc, _ReadTimeout):
        return RedisTimeoutError(f"Timeout reading from {where}")
    if isinstance(exc, OSError):
        return RedisConnectionError(f"Error while reading from {where} : {exc.args}")
    if isinstance(exc, Exception):
        return exc
    raise exc


def async_direct(backend: Any) -> AsyncDirect | None:
    """The hot path for an :class:`~dsprims.AsyncRedisBackend`, or ``None``."""
    import redis.asyncio

    client = backend.client
    if backend.is_cluster or not _eligible(client, redis.asyncio.Redis):
        return None
    return AsyncDirect(client.connection_pool)
