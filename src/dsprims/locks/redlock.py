"""Redlock over N independent Redis servers: :class:`Redlock` and :class:`AsyncRedlock`.

Algorithm (Sanfilippo, "Distributed locks with Redis", redis.io): the client runs the same
grant script as :class:`~dsprims.RedisLock` on every server *in parallel* and holds the lock
when a majority granted it and the time the round took leaves the lease valid
(``elapsed < ttl - ttl * clock_drift - 2 ms``); otherwise it releases whatever it got on every
server and retries after the majority's remaining lease plus a random delay (so that
contenders do not split the vote forever). Extend and release fan out the same way and need a
majority.

Fan-out. The sync class sends the command on one non-blocking connection per server (one
``send`` each), then waits for the replies with one ``poll`` over the round's sockets and reads
each as it arrives: the round costs one round trip of the slowest server, with no thread per
call. The asyncio class gathers the same per-server exchanges. The connections are the lock's
own (made from each client's settings), with connect and read timeouts of ``server_timeout``
and retries off: a server that does not answer in time (a sync round gives all its servers
``server_timeout`` from the end of its sends) counts as a refusal and its connection is
dropped, so no reply and no client-side retry can land after ``acquire()`` returned. A
command already delivered to a frozen server may still execute when it thaws; its key then
expires after ``ttl``.

Fencing tokens: each server issues ``max(counter + 1, its time in µs)`` in the grant script;
the lease's token is the largest token of the granting majority. Two successive holders' grant
majorities share at least one server, which issued the later holder a larger token, but a
*majority* alone cannot give a safe token: the earlier holder's largest token may come from a
server the later holder never reached. Redlock tokens are therefore strictly increasing only
under the same assumption Redlock itself makes: the servers' clocks agree to within the lock's
``ttl`` (the next grant happens at least a lease after the previous one, so its time floor is
larger). Where clocks cannot be trusted, use ZooKeeper (czxid) or a single Redis with
``fencing="counter"`` and AOF.

Waiting: contenders queue a ticket on the first server only, and block in ``BLPOP`` there, so a
release on that server wakes the next contender; if the first server is down they fall back to
sleeping until the majority's lease ends (plus the random delay). Redlock is never FIFO-fair.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import math
import random
import select
import socket
import time
from collections.abc import Sequence
from typing import Any

from dsprims.backends._lua import LuaScript, lua_script
from dsprims.backends.base import DEFAULT_PREFIX, check_name, check_prefix
from dsprims.backends.url import resolve_async_backend, resolve_backend
from dsprims.errors import BackendError, BackendUnavailable, ConfigurationError, DsprimsError
from dsprims.locks._direct import Incomplete as _Incomplete
from dsprims.locks._direct import _bulk, fork_safe_stack, pack_head, pack_tail, ready_writer
from dsprims.locks._direct import parse_reply as _parse
from dsprims.locks._lock import AsyncLockBase, LockBase
from dsprims.locks.core import (
    DEFAULT_TTL,
    AcquireDecision,
    FencingMode,
    LockParams,
    check_ttl,
    lease_deadline,
    quorum_outcome,
)
from dsprims.locks.lease import OnLost
from dsprims.locks.redis import _AsyncRedisLockStore, _Scripts, _wait_slice
from dsprims.timesource import SYSTEM_CLOCK, Clock

__all__ = ["AsyncRedlock", "Redlock"]

# The scripts of a round, as indexes into the per-server command heads (_Servers.heads).
ACQUIRE, RELEASE, EXTEND, LEAVE = range(4)


def _translate(exc: BaseException) -> DsprimsError:
    from dsprims.backends.redis import translate_redis_error

    return translate_redis_error(exc)


def _is_noscript(exc: BaseException) -> bool:
    import redis.exceptions as rexc

    return isinstance(exc, rexc.NoScriptError)


def _unavailable(what: str, exc: BaseException | None = None) -> DsprimsError:
    """A socket failure as the error redis-py would have raised, translated."""
    import redis.exceptions as rexc

    detail = f"{what}: {exc}" if exc is not None else what
    return _translate(rexc.ConnectionError(detail))


#: Idle raw connections kept per server for reuse.
IDLE_CONNECTIONS = 32

# Stands in for the reply of a server a round did not contact.
_SKIPPED = BackendUnavailable("server not contacted in this round")
_TIMED_OUT = "Timeout reading from socket (server_timeout)"


class _Servers:
    """The independent servers of one Redlock and the lock's own raw connections to them.

    Connections are made from each client's pool settings but owned here, with the socket and
    connect timeouts set to ``server_timeout`` and retries off: a frozen server then costs
    ``server_timeout`` (not the client's socket timeout), and nothing is ever re-sent. Plain
    TCP and Unix sockets of the sync class are switched to non-blocking mode once connected
    (see :func:`_sync_fanout`).

    ``heads[i][kind]`` holds, for server ``i`` and script ``kind`` (:data:`ACQUIRE` …), the
    RESP bytes of ``EVALSHA <sha> <numkeys> <keys>`` and of the same ``EVAL <source> …`` (the
    NOSCRIPT fallback), keys encoded as that server's client does, packed once: a round's
    command is a head plus the per-call arguments.
    """

    def __init__(self, backends: list[Any], plan: _RedlockPlan) -> None:
        self.backends = backends
        self.server_timeout = plan.server_timeout
        # Emptied in a forked child (the parent's sockets), like the single locks' stacks.
        self._idle: list[list[Any]] = [fork_safe_stack() for _ in backends]
        self.skip = [False] * len(backends)
        self.heads: list[list[tuple[bytes, bytes]]] = []
        for backend in backends:
            encode = backend.client.get_encoder().encode
            heads = []
            for script, keys, nargs in plan.kinds:
                head = pack_head(script.sha, [encode(k) for k in keys], nargs)
                sha = _bulk(b"EVALSHA") + _bulk(script.sha.encode())
                source = _bulk(b"EVAL") + _bulk(script.source.encode())
                heads.append((head, head.replace(sha, source, 1)))
            self.heads.append(heads)

    def packed(self, kind: int, bodies: Sequence[bytes]) -> list[bytes]:
        """The whole ``EVALSHA`` command of a round for each server (benchmarks, tests)."""
        return [self.heads[i][kind][0] + body for i, body in enumerate(bodies)]

    def take(self, i: int) -> Any:
        try:
            return self._idle[i].pop()
        except IndexError:
            return self.make(i)

    def make(self, i: int) -> Any:
        """A new (not yet connected) connection to server ``i``."""
        conn = self.backends[i].client.connection_pool.make_connection()
        conn.socket_timeout = conn.socket_connect_timeout = self.server_timeout
        conn.retry = _no_retry(conn)
        return conn

    def give(self, i: int, conn: Any) -> bool:
        """Keep ``conn`` for reuse; ``False`` when enough are idle (the caller closes it)."""
        if len(self._idle[i]) < IDLE_CONNECTIONS:
            self._idle[i].append(conn)
            return True
        return False

    def keep(self, i: int, conn: Any) -> None:
        """Keep a sync ``conn`` for reuse, or close it when enough are idle."""
        if not self.give(i, conn):
            conn.disconnect()

    def answered(self, replies: list[Any]) -> _Servers:
        """A view of the servers that answered a round (undoing it elsewhere would only cost
        timeouts: a grant that lands late on a silent server expires after ``ttl``)."""
        view = copy.copy(self)
        view.skip = [isinstance(r, BackendUnavailable) for r in replies]
        return view

    def idle(self) -> list[Any]:
        """Take every idle connection (to close them)."""
        taken = []
        for idle in self._idle:
            while idle:
                taken.append(idle.pop())
        return taken

    def close(self) -> None:
        for conn in self.idle():
            with contextlib.suppress(Exception):
                conn.disconnect()


def _no_retry(conn: Any) -> Any:
    from redis.backoff import NoBackoff

    if asyncio.iscoroutinefunction(conn.connect):
        from redis.asyncio.retry import Retry as AsyncRetry

        return AsyncRetry(NoBackoff(), 0)
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)


def _connect(conn: Any) -> Any:
    """Connect ``conn`` (handshake included: AUTH, SELECT, HELLO…) and return its socket,
    switched to non-blocking mode when it is a plain socket."""
    conn.connect()
    sock = conn._sock
    if type(sock) is socket.socket:
        sock.settimeout(0.0)
    return sock


#: Seconds a connection may sit idle before its next use first checks that the server did not
#: close it meanwhile (Redis' smallest idle ``timeout`` is 1 s): one ``poll`` in a sync round,
#: the stream's state (no system call) in an asyncio one.
STALE_AFTER = 1.0
# The attribute on a connection that says when a round last used it (monotonic seconds).
_USED = "_dsprims_redlock_used"


def _readable(sock: socket.socket) -> bool:
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _send_all(sock: socket.socket, data: bytes, timeout: float) -> None:
    """Write ``data`` (e.g. a whole script) on a non-blocking socket within ``timeout``."""
    sock.settimeout(timeout)
    try:
        sock.sendall(data)
    finally:
        sock.settimeout(0.0)


# One server's part of a sync round: [server index, connection, socket, reply bytes so far,
# whether the command was re-sent as EVAL]. A list: cheaper to make than an object, and the
# round makes one per server.
_I, _CONN, _SOCK, _BUF, _RESENT = range(5)
_Exchange = list[Any]


def _sync_fanout(servers: _Servers, kind: int, bodies: Sequence[bytes]) -> list[Any]:
    """Send script ``kind`` with ``bodies[i]`` (its packed arguments) to every server ``i``,
    then read the replies as they arrive; failures come back as errors.

    The sockets are non-blocking: each command is one ``send`` system call, and the replies are
    awaited with one ``poll`` over the round's sockets (returning as soon as any is readable,
    often all of them), each read with one ``recv``. The round's replies must all arrive
    within ``server_timeout`` after the sends; a server that misses it, fails, or replies
    with anything but one complete reply counts as a refusal, and its connection is closed so
    that a late reply is never read by a later round.
    """
    heads, skip, idle = servers.heads, servers.skip, servers._idle
    replies: list[Any] = [_SKIPPED] * len(bodies)
    waiting: dict[int, _Exchange] = {}
    blocking: list[_Exchange] = []
    now = time.monotonic()
    for i, body in enumerate(bodies):
        if skip[i]:
            continue
        try:
            conn = idle[i].pop()
        except IndexError:
            conn = servers.make(i)
        try:
            sock = conn._sock
            if sock is None:
                sock = _connect(conn)
            elif now - getattr(conn, _USED, now) > STALE_AFTER and _readable(sock):
                # Idle for a while, and readable with no command in flight: the server (its
                # `timeout` setting, a restart) or a middlebox closed it. Without retries, it
                # would cost this round a vote; a fresh connection is as good as unused.
                conn.disconnect()
                sock = _connect(conn)
            setattr(conn, _USED, now)
            command = heads[i][kind][0] + body
            if type(sock) is socket.socket:
                if sock.send(command) != len(command):
                    raise BlockingIOError  # a full send buffer: never with one small command
                waiting[sock.fileno()] = [i, conn, sock, b"", False]
            else:  # e.g. TLS: redis-py's own blocking exchange, bounded by server_timeout
                conn.send_packed_command([command], check_health=False)
                blocking.append([i, conn, sock, b"", False])
        except Exception as exc:
            conn.disconnect()
            replies[i] = (
                _unavailable("Error while writing to socket", exc)
                if isinstance(exc, OSError)
                else _translate(exc)
            )
    if waiting:
        _collect(servers, kind, bodies, waiting, replies)
    for ex in blocking:
        replies[ex[_I]] = _blocking_reply(servers, kind, bodies, ex)
    return replies


def _collect(
    servers: _Servers,
    kind: int,
    bodies: Sequence[bytes],
    waiting: dict[int, _Exchange],
    replies: list[Any],
) -> None:
    """Read the replies of the exchanges in ``waiting`` (by file descriptor) into ``replies``."""
    poller = select.poll()
    for fd in waiting:
        poller.register(fd, select.POLLIN)
    timeout = servers.server_timeout
    deadline = time.monotonic() + timeout
    while True:
        ready = poller.poll(math.ceil(timeout * 1000)) if timeout > 0 else []
        if not ready:
            for ex in waiting.values():
                ex[_CONN].disconnect()
                replies[ex[_I]] = _unavailable(_TIMED_OUT)
            return
        for fd, _events in ready:
            ex = waiting[fd]
            try:
                chunk = ex[_SOCK].recv(4096)
            except BlockingIOError:
                continue  # a spurious wake-up
            except OSError as exc:
                chunk = exc
            # The usual reply, one whole integer, is parsed right here.
            if (
                type(chunk) is bytes
                and chunk[:1] == b":"
                and not ex[_BUF]
                and chunk.find(b"\r\n") == len(chunk) - 2
            ):
                reply: Any = int(chunk[1:-2])
                servers.keep(ex[_I], ex[_CONN])
            else:
                reply = _receive(servers, kind, bodies, ex, chunk)
                if reply is _Incomplete:
                    continue
            poller.unregister(fd)
            del waiting[fd]
            replies[ex[_I]] = reply
        if not waiting:
            return
        timeout = deadline - time.monotonic()


def _receive(
    servers: _Servers, kind: int, bodies: Sequence[bytes], ex: _Exchange, chunk: bytes | OSError
) -> Any:
    """What ``chunk`` (bytes read from ``ex``'s socket, or the read's error) makes of the
    reply: the reply (or its error), or ``_Incomplete`` when more bytes are needed."""
    i, conn = ex[_I], ex[_CONN]
    if isinstance(chunk, OSError):
        conn.disconnect()
        return _unavailable("Error while reading from socket", chunk)
    if not chunk:
        conn.disconnect()
        return _unavailable("Connection closed by server.")
    buf = ex[_BUF] + chunk
    try:
        reply, end = _parse(buf, 0)
        if end != len(buf):
            from redis.exceptions import InvalidResponse

            raise InvalidResponse("unexpected bytes after a reply")
    except _Incomplete:
        ex[_BUF] = buf
        return _Incomplete
    except Exception as exc:
        conn.disconnect()
        return _translate(exc)
    if isinstance(reply, Exception):
        if _is_noscript(reply) and not ex[_RESENT]:
            # After a restart or SCRIPT FLUSH: the same command as EVAL, in the same round.
            ex[_BUF], ex[_RESENT] = b"", True
            command = servers.heads[i][kind][1] + bodies[i]
            try:
                _send_all(ex[_SOCK], command, servers.server_timeout)
            except OSError as exc:
                conn.disconnect()
                return _unavailable("Error while writing to socket", exc)
            return _Incomplete
        reply = _translate(reply)  # a whole error reply: the connection stays usable
    servers.keep(i, conn)
    return reply


def _blocking_reply(servers: _Servers, kind: int, bodies: Sequence[bytes], ex: _Exchange) -> Any:
    i, conn = ex[_I], ex[_CONN]
    try:
        try:
            reply = conn.read_response()
        except Exception as exc:
            if not _is_noscript(exc):
                raise
            conn.send_packed_command([servers.heads[i][kind][1] + bodies[i]])
            reply = conn.read_response()
    except Exception as exc:
        # A late reply must never be read by the next user of this connection.
        conn.disconnect()
        return _translate(exc)
    servers.keep(i, conn)
    return reply


async def _async_stale(conn: Any) -> bool:
    """Whether an idle asyncio connection has unread bytes or an end of stream (the server
    closed it); the event loop has already seen them, so this costs no system call."""
    try:
        return bool(await conn.can_read())
    except Exception:
        return True


async def _async_exchange(servers: _Servers, i: int, kind: int, body: bytes, limit: float) -> Any:
    """Script ``kind`` with ``body`` on a raw connection to server ``i`` (no client
    retries), bounded by ``limit`` seconds; EVAL when the server answers NOSCRIPT. Errors
    come back as values."""
    conn = servers.take(i)
    now = time.monotonic()
    try:
        async with asyncio.timeout(limit):
            if (
                conn.is_connected
                and now - getattr(conn, _USED, now) > STALE_AFTER
                and await _async_stale(conn)
            ):
                await conn.disconnect()  # see _sync_fanout; the send below reconnects
            setattr(conn, _USED, now)
            command = servers.heads[i][kind][0] + body
            writer = ready_writer(conn)
            if writer is not None:
                writer.write(command)  # at once (these connections have a socket timeout)
            else:
                await conn.send_packed_command([command], check_health=False)
            try:
                reply = await conn.read_response()
            except Exception as exc:
                if not _is_noscript(exc):
                    raise
                await conn.send_packed_command([servers.heads[i][kind][1] + body])
                reply = await conn.read_response()
    except BaseException as exc:
        # A late reply must never be read by the next user of this connection; the close runs
        # as its own task so that a second cancellation cannot leave the socket open.
        closing = asyncio.ensure_future(conn.disconnect(nowait=True))
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.shield(closing)
        if isinstance(exc, Exception):
            return _translate(exc)
        raise
    if not servers.give(i, conn):
        await conn.disconnect()
    return reply


async def _async_fanout(
    servers: _Servers, kind: int, bodies: Sequence[bytes], limit: float
) -> list[Any]:
    """The asyncio twin of :func:`_sync_fanout` (one task per contacted server)."""

    async def one(i: int, body: bytes) -> Any:
        if servers.skip[i]:
            return _SKIPPED
        return await _async_exchange(servers, i, kind, body, limit)

    return list(await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies))))


_INTS = {int}
# An empty ticket argument.
_NO_TICKET = _bulk(b"")


class _RedlockPlan:
    """Arguments and outcomes of Redlock rounds: shared by the sync and asyncio stores.

    A round is a script kind and one packed argument list (``body``) per server.
    """

    def __init__(
        self,
        scripts: _Scripts,
        n: int,
        params: LockParams,
        clock: Clock,
        server_timeout: float,
        retry_delay: float,
    ) -> None:
        self.scripts = scripts
        self.n = n
        self.params = params
        self.clock = clock
        self.server_timeout = server_timeout
        self.retry_delay = retry_delay
        self.wait_slice = scripts.wait_slice
        #: Per kind (ACQUIRE, RELEASE, EXTEND, LEAVE): the script, its keys, its arguments.
        self.kinds: tuple[tuple[LuaScript, list[str], int], ...] = (
            (lua_script("lock_acquire"), scripts.lock_keys, 3),
            (lua_script("lock_release"), scripts.lock_keys, 2),
            (lua_script("lock_extend"), scripts.keys[:1], 4),
            (lua_script("lock_leave"), scripts.keys, 5),
        )
        # The constant last arguments, packed once (they vary only with a pinned clock).
        self._pinned = scripts.clock is not None
        self._acquire_tail = pack_tail([scripts.acquire_tail()])
        self._release_tail = pack_tail([scripts.release_tail()])
        self._rng = random.SystemRandom()
        # A round that took less than this still leaves the lease valid (see quorum_outcome).
        self._valid_for = lease_deadline(0.0, params.ttl, params.clock_drift)

    def acquire_bodies(self, owner: str, ticket: str) -> list[bytes]:
        s = self.scripts
        who = _bulk(owner.encode())
        tail = pack_tail([s.acquire_tail()]) if self._pinned else self._acquire_tail
        rest = who + _NO_TICKET + tail
        if not ticket:
            return [rest] * self.n
        # Only the first server queues the ticket: its wake-up list is the one waiters block on.
        return [who + _bulk(ticket.encode()) + tail, *[rest] * (self.n - 1)]

    def outcome(self, replies: list[Any], elapsed: float) -> AcquireDecision:
        """The round's decision: :func:`~dsprims.locks.core.quorum_outcome` of the replies
        (``replies[i]``: server ``i``'s script reply, or its error), with jitter on retries."""
        if elapsed < self._valid_for and set(map(type, replies)) == _INTS:
            # Every server granted (the scripts reply a bare token then), in time: what
            # quorum_outcome decides, without a decision object per server (pinned to it by
            # test_outcome_fast_path_agrees_with_the_core).
            return AcquireDecision(True, max(replies), 0, None)
        decisions = [
            None if isinstance(r, BaseException) else self.scripts.acquire_result(r)
            for r in replies
        ]
        decision = quorum_outcome(decisions, elapsed, self.params.ttl, self.params.clock_drift)
        if decision.granted or decision.wait_us < 0:
            return decision
        jitter = round(self._rng.uniform(0, self.retry_delay) * 1e6)
        return AcquireDecision(False, 0, decision.wait_us + jitter, None)

    def undo_bodies(self, owner: str, ticket: str) -> list[bytes]:
        s = self.scripts
        return [
            pack_tail(s.leave_args(owner, ticket if i == 0 else "", False)) for i in range(self.n)
        ]

    def release_bodies(self, owner: str) -> list[bytes]:
        tail = pack_tail([self.scripts.release_tail()]) if self._pinned else self._release_tail
        return [_bulk(owner.encode()) + tail] * self.n

    def extend_bodies(self, owner: str, ttl: float) -> list[bytes]:
        return [pack_tail(self.scripts.extend_args(owner, ttl))] * self.n

    def majority(self, replies: list[Any]) -> bool:
        """Whether a majority replied 1 (released, extended); errors never equal 1."""
        return replies.count(1) >= self.n // 2 + 1


class _RedlockStore:
    def __init__(self, backends: list[Any], plan: _RedlockPlan) -> None:
        self.backends = backends
        self.servers = _Servers(backends, plan)
        self.plan = plan
        self.wait_slice = plan.wait_slice

    def open_ticket(self, ticket: str) -> None:
        """Nothing to prepare."""

    def close_ticket(self, ticket: str) -> None:
        """Nothing to forget."""

    def attempt(self, owner: str, ticket: str) -> AcquireDecision:
        plan = self.plan
        start = plan.clock.monotonic()
        replies = _sync_fanout(self.servers, ACQUIRE, plan.acquire_bodies(owner, ticket))
        decision = plan.outcome(replies, plan.clock.monotonic() - start)
        if not decision.granted:
            answered = self.servers.answered(replies)
            _sync_fanout(answered, LEAVE, plan.undo_bodies(owner, ""))
        return decision

    def wait(self, ticket: str, seconds: float) -> None:
        s, first = self.plan.scripts, self.backends[0]
        key = s.wake_prefix + ticket
        try:
            if s.clock is None:
                first.call(first.client.execute_command, "BLPOP", key, s.blpop_timeout(seconds))
                return
            first.call(first.client.execute_command, "LPOP", key)
        except BackendError:
            pass  # the first server is down: sleep instead of blocking there
        self.plan.clock.sleep(seconds)

    def leave(self, owner: str, ticket: str) -> None:
        _sync_fanout(self.servers, LEAVE, self.plan.undo_bodies(owner, ticket))

    def release(self, owner: str) -> bool:
        plan = self.plan
        replies = _sync_fanout(self.servers, RELEASE, plan.release_bodies(owner))
        return plan.majority(replies)

    def extend(self, owner: str, ttl: float) -> bool:
        plan = self.plan
        start = plan.clock.monotonic()
        replies = _sync_fanout(self.servers, EXTEND, plan.extend_bodies(owner, ttl))
        valid = plan.clock.monotonic() - start < lease_deadline(0.0, ttl, plan.params.clock_drift)
        return valid and plan.majority(replies)


class _AsyncRedlockStore:
    def __init__(self, backends: list[Any], plan: _RedlockPlan) -> None:
        self.backends = backends
        self.servers = _Servers(backends, plan)
        self._first = _AsyncRedisLockStore(backends[0], plan.scripts)
        self.plan = plan
        self.wait_slice = plan.wait_slice

    def open_ticket(self, ticket: str) -> None:
        """Nothing to prepare."""

    def close_ticket(self, ticket: str) -> None:
        """Nothing to forget."""

    async def attempt(self, owner: str, ticket: str) -> AcquireDecision:
        plan = self.plan
        start = plan.clock.monotonic()
        bodies = plan.acquire_bodies(owner, ticket)
        replies = await _async_fanout(self.servers, ACQUIRE, bodies, plan.server_timeout)
        decision = plan.outcome(replies, plan.clock.monotonic() - start)
        if not decision.granted:
            answered = self.servers.answered(replies)
            undo = plan.undo_bodies(owner, "")
            await _async_fanout(answered, LEAVE, undo, plan.server_timeout)
        return decision

    async def wait(self, ticket: str, seconds: float) -> None:
        try:
            await self._first.wait(ticket, seconds)
        except BackendError:
            await self.plan.clock.asleep(seconds)  # the first server is down: sleep instead

    async def leave(self, owner: str, ticket: str) -> None:
        # The first server's store finishes a BLPOP cut off by a cancellation and drops the
        # ticket; the others only need the grant (if any) taken back.
        with contextlib.suppress(BackendError):
            await self._first.leave(owner, ticket)
        bodies = self.plan.undo_bodies(owner, "")
        others = self.servers.answered([_SKIPPED] + [None] * (len(bodies) - 1))
        await _async_fanout(others, LEAVE, bodies, self.plan.server_timeout)

    async def release(self, owner: str) -> bool:
        plan = self.plan
        bodies = plan.release_bodies(owner)
        replies = await _async_fanout(self.servers, RELEASE, bodies, plan.server_timeout)
        return plan.majority(replies)

    async def extend(self, owner: str, ttl: float) -> bool:
        plan = self.plan
        start = plan.clock.monotonic()
        bodies = plan.extend_bodies(owner, ttl)
        replies = await _async_fanout(self.servers, EXTEND, bodies, plan.server_timeout)
        valid = plan.clock.monotonic() - start < lease_deadline(0.0, ttl, plan.params.clock_drift)
        return valid and plan.majority(replies)


def _check_backends(resolved: list[Any], cls: str) -> list[Any]:
    if not resolved:
        raise ConfigurationError(f"{cls} needs at least one backend in backends=")
    for b in resolved:
        if getattr(b, "kind", None) != "redis" or getattr(b, "is_cluster", False):
            raise ConfigurationError(f"{cls} needs independent standalone Redis servers, got {b!r}")
    if len({id(b.client) for b in resolved}) != len(resolved):
        raise ConfigurationError(f"{cls} backends must be distinct servers")
    return resolved


def _plan(
    name: str,
    backends: list[Any],
    params: LockParams,
    clock: Clock | None,
    prefix: str,
    server_timeout: float | None,
    retry_delay: float,
) -> _RedlockPlan:
    scripts = _Scripts(
        check_prefix(prefix),
        check_name(name, "name"),
        params,
        clock,
        _wait_slice(backends[0].client, None),
    )
    if server_timeout is None:
        server_timeout = min(1.0, max(0.05, params.ttl / 50))
    server_timeout = check_ttl(server_timeout, "server_timeout")
    retry_delay = check_ttl(retry_delay, "retry_delay")
    return _RedlockPlan(
        scripts,
        len(backends),
        params,
        SYSTEM_CLOCK if clock is None else clock,
        server_timeout,
        retry_delay,
    )


class Redlock(LockBase):
    """The Redlock algorithm over independent Redis servers, with fencing tokens.

    Args:
        name: the lock name.
        backends: the servers (:class:`~dsprims.RedisBackend` objects, ``redis://`` URLs or
            redis-py clients), ideally an odd number (3 or 5) of independent, non-replicated
            standalone servers.
        ttl: lease length in seconds.
        auto_renew: renew held leases from the shared watchdog thread (needs a majority).
        on_lost: ``on_lost(lease)``, called once when a lease is found lost.
        max_hold: stop renewing this many seconds after the grant.
        renew_fraction: renew after this fraction of the lease.
        clock_drift: the Redlock drift factor (fraction of ``ttl`` kept in reserve).
        fencing: ``"clock"`` or ``"counter"`` (per server; see the module docstring).
        server_timeout: seconds to wait for each server's reply (default ``ttl / 50``,
            between 0.05 and 1.0).
        retry_delay: the random extra delay (upper bound, seconds) before retrying a round
            that did not reach a majority.
        clock: pin time for tests (the watchdog is off with any clock but the system clock).
        prefix: key namespace.
    """

    def __init__(
        self,
        name: str,
        *,
        backends: Sequence[object],
        ttl: float = DEFAULT_TTL,
        auto_renew: bool = True,
        on_lost: OnLost | None = None,
        max_hold: float | None = None,
        renew_fraction: float = 1 / 3,
        clock_drift: float = 0.01,
        fencing: FencingMode = "clock",
        server_timeout: float | None = None,
        retry_delay: float = 0.05,
        clock: Clock | None = None,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        params = LockParams(ttl, auto_renew, renew_fraction, max_hold, False, clock_drift, fencing)
        given = list(backends)
        self.backends = _check_backends([resolve_backend(b) for b in given], "Redlock")
        # Only clients this lock made from URLs are its to close.
        self._owned = [
            b for b, src in zip(self.backends, given, strict=True) if isinstance(src, str)
        ]
        plan = _plan(name, self.backends, params, clock, prefix, server_timeout, retry_delay)
        self._redlock_store = _RedlockStore(self.backends, plan)
        super().__init__(name, self._redlock_store, params, clock=clock, on_lost=on_lost)

    def close(self) -> None:
        """Disconnect the raw connections this lock keeps to each server, and close the
        clients it made from URLs (backend objects passed in stay open). Idempotent."""
        self._redlock_store.servers.close()
        owned, self._owned = self._owned, []
        for backend in owned:
            backend.close()


class AsyncRedlock(AsyncLockBase):
    """The asyncio twin of :class:`Redlock` (same parameters, over ``AsyncRedisBackend``)."""

    def __init__(
        self,
        name: str,
        *,
        backends: Sequence[object],
        ttl: float = DEFAULT_TTL,
        auto_renew: bool = True,
        on_lost: OnLost | None = None,
        max_hold: float | None = None,
        renew_fraction: float = 1 / 3,
        clock_drift: float = 0.01,
        fencing: FencingMode = "clock",
        server_timeout: float | None = None,
        retry_delay: float = 0.05,
        clock: Clock | None = None,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        params = LockParams(ttl, auto_renew, renew_fraction, max_hold, False, clock_drift, fencing)
        given = list(backends)
        resolved = [resolve_async_backend(b) for b in given]
        self.backends = _check_backends(resolved, "AsyncRedlock")
        self._owned = [b for b, src in zip(resolved, given, strict=True) if isinstance(src, str)]
        plan = _plan(name, self.backends, params, clock, prefix, server_timeout, retry_delay)
        self._redlock_store = _AsyncRedlockStore(self.backends, plan)
        super().__init__(name, self._redlock_store, params, clock=clock, on_lost=on_lost)

    async def aclose(self) -> None:
        """See :meth:`Redlock.close` (also waits for the lock's background clean-ups)."""
        owned, self._owned = self._owned, []
        if owned:
            await self.settle()
        for conn in self._redlock_store.servers.idle():
            with contextlib.suppress(Exception):
                await conn.disconnect()
        for backend in owned:
            await backend.aclose()
