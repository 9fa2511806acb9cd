"""Redlock over N independent Redis servers: :class:`Redlock` and :class:`AsyncRedlock`.

Algorithm (Sanfilippo, "Distributed locks with Redis", redis.io): the client runs the same
grant script as :class:`~dsprims.RedisLock` on every server *in parallel* and holds the lock
when a majority granted it and the time the round took leaves the lease valid
(``elapsed < ttl - ttl * clock_drift - 2 ms``); otherwise it releases whatever it got on every
server and retries after the majority's remaining lease plus a random delay (so that
contenders do not split the vote forever). Extend and release fan out the same way and need a
majority.

Fan-out. The sync class sends the command on one connection per server, then reads the
replies: the round costs one round trip of the slowest server, with no thread per call. The
asyncio class gathers the same per-server exchanges. The connections are the lock's own (made
from each client's settings), with connect and read timeouts of ``server_timeout`` and retries
off: a server that does not answer in time counts as a refusal and its connection is dropped,
so no reply and no client-side retry can land after ``acquire()`` returned. A command
already delivered to a frozen server may still execute when it thaws; its key then expires
after ``ttl``.

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
import collections
import contextlib
import random
from collections.abc import Sequence
from typing import Any

from dsprims.backends._lua import LuaScript, lua_script
from dsprims.backends.base import DEFAULT_PREFIX, check_name, check_prefix
from dsprims.backends.url import resolve_async_backend, resolve_backend
from dsprims.errors import BackendError, BackendUnavailable, ConfigurationError, DsprimsError
from dsprims.locks._direct import Incomplete as _Incomplete
from dsprims.locks._direct import pack_head, pack_tail
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

Call = tuple[LuaScript, list[str], list[str]]


def _translate(exc: BaseException) -> DsprimsError:
    from dsprims.backends.redis import translate_redis_error

    return translate_redis_error(exc)


def _is_noscript(exc: BaseException) -> bool:
    import redis.exceptions as rexc

    return isinstance(exc, rexc.NoScriptError)


#: Idle raw connections kept per server for reuse.
IDLE_CONNECTIONS = 32

# Stands in for the reply of a server a round did not contact.
_SKIPPED = BackendUnavailable("server not contacted in this round")


class _Servers:
    """The independent servers of one Redlock and the lock's own raw connections to them.

    Connections are made from each client's pool settings but owned here, with the socket and
    connect timeouts set to ``server_timeout`` and retries off: a frozen server then costs
    ``server_timeout`` (not the client's socket timeout), and nothing is ever re-sent.
    """

    def __init__(self, backends: list[Any], server_timeout: float) -> None:
        self.backends = backends
        self.server_timeout = server_timeout
        self._idle: list[collections.deque[Any]] = [collections.deque() for _ in backends]
        self._skip = [False] * len(backends)
        # RESP heads of the scripts' commands per server (keys encoded as that client does).
        self._heads: dict[tuple[int, str, str, int, int], bytes] = {}

    def pack(self, i: int, call: Call, tail: bytes) -> bytes:
        """The whole command of ``call`` for server ``i``, ``tail`` being its packed ARGV."""
        script, keys, args = call
        index = (i, script.sha, keys[0], len(keys), len(args))
        head = self._heads.get(index)
        if head is None:
            encode = self.backends[i].client.get_encoder().encode
            head = pack_head(script.sha, [encode(k) for k in keys], len(args))
            if len(self._heads) < 64:
                self._heads[index] = head
        return head + tail

    def up(self, i: int) -> bool:
        return not self._skip[i]

    def take(self, i: int) -> Any:
        try:
            return self._idle[i].pop()
        except IndexError:
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

    def answered(self, replies: list[Any]) -> _Servers:
        """A view of the servers that answered a round (undoing it elsewhere would only cost
        timeouts: a grant that lands late on a silent server expires after ``ttl``)."""
        view = _Servers.__new__(_Servers)
        view.backends, view.server_timeout, view._idle = (
            self.backends,
            self.server_timeout,
            self._idle,
        )
        view._skip = [isinstance(r, BackendUnavailable) for r in replies]
        view._heads = self._heads
        return view

    def close(self) -> None:
        for idle in self._idle:
            while idle:
                with contextlib.suppress(Exception):
                    idle.pop().disconnect()


def _no_retry(conn: Any) -> Any:
    from redis.backoff import NoBackoff

    if asyncio.iscoroutinefunction(conn.connect):
        from redis.asyncio.retry import Retry as AsyncRetry

        return AsyncRetry(NoBackoff(), 0)
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)


def _read_reply(conn: Any) -> Any:
    """Read one reply to a command sent on ``conn`` (a raw connection owned by this module).

    The scripts' replies are one integer or a short array, so they are parsed here straight
    from the socket rather than through redis-py's general parser (several µs per reply, six
    replies per Redlock cycle). Requests and replies alternate strictly on these connections,
    so nothing beyond the reply is ever buffered. Raises like ``read_response`` would: socket
    errors and timeouts (``OSError``), a closed connection, error replies.
    """
    sock = getattr(conn, "_sock", None)
    if sock is None:
        return conn.read_response()
    buf = sock.recv(4096)
    while True:
        if not buf:
            from redis.exceptions import ConnectionError as RedisConnectionError

            raise RedisConnectionError("Connection closed by server.")
        try:
            reply, end = _parse(buf, 0)
        except _Incomplete:
            more = sock.recv(4096)
            buf = buf + more if more else b""
            continue
        if end != len(buf):
            from redis.exceptions import InvalidResponse

            raise InvalidResponse("unexpected bytes after a reply")
        if isinstance(reply, Exception):
            raise reply
        return reply


def _sync_fanout(servers: _Servers, calls: Sequence[Call]) -> list[Any]:
    """Send one script per server, then read every reply; failures come back as errors."""
    sent: list[Any] = []
    tails: dict[int, bytes] = {}
    for i, call in enumerate(calls):
        if not servers.up(i):
            sent.append(_SKIPPED)
            continue
        conn = servers.take(i)
        try:
            # Servers that get the same call share one encoding of its arguments.
            tail = tails.get(id(call))
            if tail is None:
                tail = tails[id(call)] = pack_tail(call[2])
            conn.send_packed_command([servers.pack(i, call, tail)], check_health=False)
        except Exception as exc:
            conn.disconnect()
            sent.append(_translate(exc))
        else:
            sent.append(conn)
    replies: list[Any] = []
    for i, (conn, (script, keys, args)) in enumerate(zip(sent, calls, strict=True)):
        if isinstance(conn, DsprimsError):
            replies.append(conn)
            continue
        try:
            # Each read is bounded by the connection's own timeout (server_timeout); the
            # replies arrive in parallel, so a round costs about one server_timeout at worst
            # per silent server.
            try:
                replies.append(_read_reply(conn))
            except Exception as exc:
                if not _is_noscript(exc):
                    raise
                conn.send_command("EVAL", script.source, len(keys), *keys, *args)
                replies.append(conn.read_response())
        except Exception as exc:
            # A late reply must never be read by the next user of this connection.
            conn.disconnect()
            replies.append(_translate(exc))
        else:
            if not servers.give(i, conn):
                conn.disconnect()
    return replies


async def _async_exchange(
    servers: _Servers,
    i: int,
    command: bytes,
    limit: float,
    fallback: Sequence[object] = (),
) -> Any:
    """One pre-packed command on a raw connection (no client retries), bounded by ``limit``
    seconds.

    ``fallback`` is sent instead when the server answers NOSCRIPT. Errors come back as values.
    """
    conn = servers.take(i)
    try:
        async with asyncio.timeout(limit):
            await conn.send_packed_command([command], check_health=False)
            try:
                reply = await conn.read_response()
            except Exception as exc:
                if not fallback or not _is_noscript(exc):
                    raise
                await conn.send_command(*fallback)
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


async def _async_fanout(servers: _Servers, calls: Sequence[Call], limit: float) -> list[Any]:
    tails: dict[int, bytes] = {}

    async def one(i: int, call: Call) -> Any:
        if not servers.up(i):
            return _SKIPPED
        script, keys, args = call
        tail = tails.get(id(call))
        if tail is None:
            tail = tails[id(call)] = pack_tail(args)
        fallback = ["EVAL", script.source, len(keys), *keys, *args]
        return await _async_exchange(servers, i, servers.pack(i, call, tail), limit, fallback)

    return list(await asyncio.gather(*(one(i, c) for i, c in enumerate(calls))))


class _RedlockPlan:
    """Arguments and outcomes of Redlock rounds: shared by the sync and asyncio stores."""

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
        self._acquire = lua_script("lock_acquire")
        self._leave = lua_script("lock_leave")
        self._release = lua_script("lock_release")
        self._extend = lua_script("lock_extend")
        self._rng = random.SystemRandom()

    def acquire_calls(self, owner: str, ticket: str) -> list[Call]:
        s = self.scripts
        # Only the first server queues the ticket: its wake-up list is the one waiters block on.
        rest = (self._acquire, s.lock_keys, s.acquire_args(owner, ""))
        first = (self._acquire, s.lock_keys, s.acquire_args(owner, ticket)) if ticket else rest
        return [first, *[rest] * (self.n - 1)]

    def outcome(self, replies: list[Any], elapsed: float) -> AcquireDecision:
        decisions = [
            None if isinstance(r, BaseException) else self.scripts.acquire_result(r)
            for r in replies
        ]
        decision = quorum_outcome(decisions, elapsed, self.params.ttl, self.params.clock_drift)
        if decision.granted or decision.wait_us < 0:
            return decision
        jitter = round(self._rng.uniform(0, self.retry_delay) * 1e6)
        return AcquireDecision(False, 0, decision.wait_us + jitter, None)

    def undo_calls(self, owner: str, ticket: str) -> list[Call]:
        s = self.scripts
        return [
            (self._leave, s.keys, s.leave_args(owner, ticket if i == 0 else "", False))
            for i in range(self.n)
        ]

    def release_calls(self, owner: str) -> list[Call]:
        s = self.scripts
        return [(self._release, s.lock_keys, s.release_args(owner))] * self.n

    def extend_calls(self, owner: str, ttl: float) -> list[Call]:
        args = self.scripts.extend_args(owner, ttl)
        return [(self._extend, self.scripts.keys[:1], args)] * self.n

    def majority(self, replies: list[Any]) -> bool:
        ok = 0
        for reply in replies:
            if isinstance(reply, BaseException):
                continue
            ok += int(reply) == 1
        return ok >= self.n // 2 + 1


class _RedlockStore:
    def __init__(self, backends: list[Any], plan: _RedlockPlan) -> None:
        self.backends = backends
        self.servers = _Servers(backends, plan.server_timeout)
        self.plan = plan
        self.wait_slice = plan.wait_slice

    def open_ticket(self, ticket: str) -> None:
        """Nothing to prepare."""

    def close_ticket(self, ticket: str) -> None:
        """Nothing to forget."""

    def attempt(self, owner: str, ticket: str) -> AcquireDecision:
        plan = self.plan
        start = plan.clock.monotonic()
        replies = _sync_fanout(self.servers, plan.acquire_calls(owner, ticket))
        decision = plan.outcome(replies, plan.clock.monotonic() - start)
        if not decision.granted:
            answered = self.servers.answered(replies)
            _sync_fanout(answered, plan.undo_calls(owner, ""))
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
        _sync_fanout(self.servers, self.plan.undo_calls(owner, ticket))

    def release(self, owner: str) -> bool:
        plan = self.plan
        replies = _sync_fanout(self.servers, plan.release_calls(owner))
        return plan.majority(replies)

    def extend(self, owner: str, ttl: float) -> bool:
        plan = self.plan
        start = plan.clock.monotonic()
        replies = _sync_fanout(self.servers, plan.extend_calls(owner, ttl))
        valid = plan.clock.monotonic() - start < lease_deadline(0.0, ttl, plan.params.clock_drift)
        return valid and plan.majority(replies)


class _AsyncRedlockStore:
    def __init__(self, backends: list[Any], plan: _RedlockPlan) -> None:
        self.backends = backends
        self.servers = _Servers(backends, plan.server_timeout)
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
        calls = plan.acquire_calls(owner, ticket)
        replies = await _async_fanout(self.servers, calls, plan.server_timeout)
        decision = plan.outcome(replies, plan.clock.monotonic() - start)
        if not decision.granted:
            answered = self.servers.answered(replies)
            await _async_fanout(answered, plan.undo_calls(owner, ""), plan.server_timeout)
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
        calls = self.plan.undo_calls(owner, "")
        others = self.servers.answered([_SKIPPED] + [None] * (len(calls) - 1))
        await _async_fanout(others, calls, self.plan.server_timeout)

    async def release(self, owner: str) -> bool:
        plan = self.plan
        replies = await _async_fanout(self.servers, plan.release_calls(owner), plan.server_timeout)
        return plan.majority(replies)

    async def extend(self, owner: str, ttl: float) -> bool:
        plan = self.plan
        start = plan.clock.monotonic()
        calls = plan.extend_calls(owner, ttl)
        replies = await _async_fanout(self.servers, calls, plan.server_timeout)
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
        backends: the servers (:class:`~dsprims.RedisBackend` objects or ``redis://`` URLs),
            ideally an odd number (3 or 5) of independent, non-replicated standalone servers.
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
        for idle in self._redlock_store.servers._idle:
            while idle:
                with contextlib.suppress(Exception):
                    await idle.pop().disconnect()
        for backend in owned:
            await backend.aclose()
