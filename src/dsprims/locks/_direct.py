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

It is used only where it is equivalent: a standalone ``redis.Redis`` (or ``redis.asyncio.Redis``)
whose ``execute_command`` is not overridden (in a subclass or on the instance), without a
single-connection client or client-side caching; everything else takes ``execute_command``.
redis-py's per-command metrics (OpenTelemetry) do not see these calls.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import weakref
from collections.abc import Sequence
from typing import Any

__all__ = ["AsyncDirect", "Direct", "async_direct", "direct", "pack_head", "pack_tail", "stack_of"]

#: Connections kept ready per pool (beyond those in flight).
IDLE_PER_POOL = 2
#: Smallest ``max_connections`` of a pool from which connections are kept ready.
MIN_POOL_FOR_IDLE = 32

# Background disconnects of broken asyncio connections (kept referenced until done).
_CLOSING: set[asyncio.Future[Any]] = set()


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


def stack_of(pool: Any) -> list[Any]:
    """The stack of ready connections of ``pool`` (made on first use)."""
    stack = getattr(pool, _ATTR, None)
    if stack is None:
        with _CREATE:
            stack = getattr(pool, _ATTR, None)
            if stack is None:
                stack = _Stack()
                setattr(pool, _ATTR, stack)
                _STACKS[id(stack)] = stack
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


def pack_tail(args: Sequence[str | bytes]) -> bytes:
    """RESP bulk strings of ``args`` (``str`` arguments are ASCII: secrets, tickets, numbers)."""
    return b"".join(_bulk(a if isinstance(a, bytes) else a.encode()) for a in args)


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


class AsyncDirect:
    """The asyncio hot path over one ``redis.asyncio.Redis`` client's pool."""

    __slots__ = ("_borrow", "_cap", "_idle", "_pool")

    def __init__(self, pool: Any) -> None:
        import redis.asyncio

        self._pool = pool
        self._borrow = _borrow(pool)
        self._cap = _idle_cap(pool, redis.asyncio.ConnectionPool)
        self._idle = stack_of(pool)

    async def call(self, packed: bytes) -> Any:
        """See :meth:`Direct.call`."""
        idle = self._idle
        try:
            conn = idle.pop()
        except IndexError:
            conn = await self._borrow()
        data = [packed]

        async def exchange() -> Any:
            # send_packed_command wraps every write in asyncio.wait_for (a task and two loop
            # turns) when the client has a socket timeout. A small command on a connected
            # transport with nothing buffered goes out at once, so it is written directly
            # (read_response still enforces the timeout); anything else takes the full path.
            writer = getattr(conn, "_writer", None)
            if (
                writer is not None
                and not conn.health_check_interval
                and not writer.transport.is_closing()
                and not writer.transport.get_write_buffer_size()
            ):
                writer.write(packed)
            else:
                await conn.send_packed_command(data)
            return await conn.read_response()

        async def fail(_error: BaseException) -> None:
            await conn.disconnect()

        try:
            reply = await conn.retry.call_with_retry(exchange, fail)
        except BaseException as exc:
            from redis.exceptions import ResponseError

            if isinstance(exc, ResponseError):
                await self._give(conn)
            else:
                # Also on cancellation: close and return it in the background, so a second
                # cancellation cannot leak it and nobody reads its late reply.
                closing = asyncio.ensure_future(self._drop(conn))
                _CLOSING.add(closing)
                closing.add_done_callback(_CLOSING.discard)
            raise
        await self._give(conn)
        return reply

    async def _drop(self, conn: Any) -> None:
        try:
            await conn.disconnect(nowait=True)
        finally:
            await self._pool.release(conn)

    async def _give(self, conn: Any) -> None:
        should_reconnect = getattr(conn, "should_reconnect", None)
        if should_reconnect is not None and should_reconnect():
            await conn.disconnect()
        if len(self._idle) < self._cap:
            self._idle.append(conn)
        else:
            await self._pool.release(conn)


def async_direct(backend: Any) -> AsyncDirect | None:
    """The hot path for an :class:`~dsprims.AsyncRedisBackend`, or ``None``."""
    import redis.asyncio

    client = backend.client
    if backend.is_cluster or not _eligible(client, redis.asyncio.Redis):
        return None
    return AsyncDirect(client.connection_pool)
