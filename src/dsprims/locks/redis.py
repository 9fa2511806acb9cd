"""Redis locks with fencing tokens: :class:`RedisLock` and :class:`AsyncRedisLock`.

Algorithm. Each decision of :mod:`dsprims.locks.core` is one Lua script, so each step is one
round trip and atomic on the server:

* ``lock_acquire.lua`` grants the lock *and* issues the fencing token in the same script, or
  queues the caller's ticket (a sorted set ordered by arrival, with a second sorted set of
  expiries so that a crashed waiter drops out by itself);
* ``lock_release.lua`` ends the lease if the caller's 128-bit owner secret holds it. In fair
  mode (the default) it then *hands the lock over*: it grants it to the head of the queue
  itself (the head's owner secret, lease length and token mode were stored when it queued, in
  the same hash slot), with the next fencing token, and pushes ``g<token>`` onto that waiter's
  own list; the waiter's ``BLPOP`` returns holding the lock. With ``fair=False`` (and in
  Redlock) it only wakes the head, which then asks again;
* waiters block in ``BLPOP`` on their own list (no polling, no herd: a release wakes exactly
  one waiter); the block is capped below the client's socket timeout (redis-py fails a
  blocking read that outlasts it) and by the holder's remaining lease, so a crashed holder is
  noticed right after its lease ends;
* ``lock_extend.lua`` extends only if the owner secret still holds the lock, so a renewal can
  never re-create an expired lock; ``lock_leave.lua`` takes back a queue entry (and a grant
  or hand-off that raced with a timeout or cancellation, passing the lock on).

An uncontended acquire + release is two round trips; a contended acquisition is two in fair
mode (queue, then the ``BLPOP`` that returns the handed-over token: release to new holder is
two message hops) and three with ``fair=False`` or ``wait_replicas`` (queue, wake-up, grant).

Keys (one hash slot per lock name): ``<prefix>:{<name>}:lock`` (a hash with the holder, its
token and deadline, the fencing counter ``f``, a lower bound ``x`` of the key's own expiry and,
while anyone may be queued, a mark ``w``; it stays at least a day after the last grant so the
counter survives idle periods), ``…:q``, ``…:qx`` and ``…:qo`` (the waiter queue, its expiries
and the fair waiters' hand-off settings, gone when nobody waits) and ``…:wake:<ticket>``
(short-lived wake-up lists). The mark and the stamp keep the uncontended cycle to three server
calls per script: without ``w`` the queue is known empty and is not read; with ``x`` far enough
ahead a grant skips the ``PEXPIRE``. The commands of that cycle are pre-packed and sent on a
ready pooled connection (``dsprims.locks._direct``), bypassing redis-py's per-command overhead
where that is equivalent; so are ``extend`` and, in the sync store, the waiter's ``BLPOP``
(whose reply hands the lock over).

Fencing tokens are ``max(counter + 1, server time in µs)`` by default (``fencing="clock"``):
strictly increasing per lock name, and still increasing after a restart of a Redis that keeps
nothing on disk, **provided the server's clock does not step back across the restart by more
than the time the restart took** (the counter is lost, the clock floor is not). With
``fencing="counter"`` tokens are a plain counter, for deployments that persist every write
(``appendonly yes`` with ``appendfsync always``, or ``WAIT`` on replicas before relying on a
grant); the counter key then never expires.

Time. Without ``clock=``, every decision reads the server's ``TIME``, so client clocks never
matter. With ``clock=`` the scripts use that clock's ``time_ns()`` instead (tests pin time this
way), and every key lives a day longer than its logical lifetime, so Redis' real-time expiry
never drops state the pinned clock still needs.

Failure modes. A frozen or unreachable server raises :class:`~dsprims.BackendUnavailable` within
the client's socket timeout; an ``acquire`` that fails this way first tries to take back its
queue entry and any grant whose reply was lost. A holder paused past its lease finds
``lease.lost`` true when it resumes (local deadline, no round trip) and its writes are refused
by :class:`~dsprims.FencedStore`. If Redis restarts and forgets the lock, a second client can
acquire it while the first still holds a lease: the first learns it at its next renewal or
``extend``/``release`` (``LockLost``), and tokens keep fencing the resource. Redis replication
is asynchronous: after a failover to a replica that missed the grant, the same can happen.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from dsprims.backends._lua import LuaScript, lua_script
from dsprims.backends.base import DEFAULT_PREFIX, check_name, check_prefix, namespaced_key
from dsprims.backends.url import resolve_async_backend, resolve_backend
from dsprims.errors import BackendUnavailable, ConfigurationError
from dsprims.locks._direct import async_direct, direct, pack_head, pack_tail
from dsprims.locks._lock import AsyncLockBase, LockBase
from dsprims.locks.core import (
    DEFAULT_TTL,
    FENCE_TTL,
    AcquireDecision,
    FencingMode,
    Handoff,
    LockParams,
    check_ttl,
    waiter_ttl_us,
)
from dsprims.locks.lease import OnLost
from dsprims.timesource import Clock

__all__ = ["AsyncRedisLock", "RedisLock"]

_ACQUIRE = lua_script("lock_acquire")
_RELEASE = lua_script("lock_release")
_EXTEND = lua_script("lock_extend")
_LEAVE = lua_script("lock_leave")

#: The RESP head of ``BLPOP <key> <timeout>``.
_BLPOP = b"*3\r\n$5\r\nBLPOP\r\n"
#: Extra lifetime (ms) of every key when the caller pins time with ``clock=``.
PINNED_SLACK_MS = 86_400_000
#: Longest single BLPOP when the client has no socket timeout.
DEFAULT_WAIT_SLICE = 2.0


def _socket_timeout(client: Any) -> float | None:
    for holder in (
        getattr(client, "connection_pool", None),
        getattr(getattr(client, "nodes_manager", None), "__dict__", None),
        client,
    ):
        kwargs = getattr(holder, "connection_kwargs", None)
        if kwargs is None and isinstance(holder, dict):
            kwargs = holder.get("connection_kwargs")
        if isinstance(kwargs, dict) and "socket_timeout" in kwargs:
            value = kwargs["socket_timeout"]
            return None if value is None else float(value)
    return None


def _wait_slice(client: Any, requested: float | None) -> float:
    timeout = _socket_timeout(client)
    if requested is not None:
        requested = check_ttl(requested, "wait_slice")
        if timeout is not None and requested >= timeout:
            raise ConfigurationError(
                f"wait_slice ({requested}s) must be below the client's socket timeout "
                f"({timeout}s): a blocking read longer than that fails"
            )
        return requested
    if timeout is None:
        return DEFAULT_WAIT_SLICE
    return min(DEFAULT_WAIT_SLICE, timeout / 2)


def translate(exc: BaseException) -> Exception:
    from dsprims.backends.redis import translate_redis_error

    return translate_redis_error(exc)


def _is_noscript(reply: object) -> bool:
    import redis.exceptions as rexc

    return isinstance(reply, rexc.NoScriptError)


def _driver_errors() -> tuple[type[BaseException], tuple[type[BaseException], ...]]:
    """NOSCRIPT's exception class and every driver exception (redis-py is imported lazily:
    ``import dsprims`` works without it)."""
    import redis.exceptions as rexc

    from dsprims.backends.redis import _DRIVER_ERRORS

    return rexc.NoScriptError, _DRIVER_ERRORS


def _not_replicated(scripts: _Scripts) -> BackendUnavailable:
    return BackendUnavailable(
        f"the grant was not acknowledged by {scripts.wait_replicas} replica(s) within "
        f"{scripts.wait_ms} ms; it was taken back"
    )


def _command_prefix(backend: Any, script: LuaScript, keys: list[str]) -> tuple[Any, ...]:
    """``EVALSHA <sha> <numkeys> <keys>``, built once per lock: pre-encoded for a standalone
    client (redis-py then skips encoding, splitting and re-tupling the command name on every
    call); plain strings for a cluster client, whose routing reads the command name."""
    if backend.is_cluster:
        return ("EVALSHA", script.sha, len(keys), *keys)
    encode = backend.client.get_encoder().encode
    return (b"EVALSHA", script.sha.encode(), str(len(keys)).encode(), *map(encode, keys))


def _packed_heads(backend: Any, scripts: _Scripts) -> dict[str, bytes]:
    """The RESP heads of the acquire (3 arguments), release (2) and extend (4) commands of one
    lock, by script name (the extend of a hand-off that must be refreshed at once is on the
    contended path too)."""
    if backend.is_cluster:
        return {}
    encode = backend.client.get_encoder().encode
    keys = [encode(k) for k in scripts.lock_keys]
    return {
        s.name: pack_head(s.sha, keys, n) for s, n in ((_ACQUIRE, 3), (_RELEASE, 2), (_EXTEND, 4))
    }


def _text(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _pool_exhausted(exc: BaseException | None) -> bool:
    """Whether ``exc`` is redis-py's "no connection to spare": ``MaxConnectionsError`` from the
    asyncio pool of redis-py 7.2 on, a ``ConnectionError("Too many connections")`` before."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import MaxConnectionsError

    if isinstance(exc, MaxConnectionsError):
        return True
    return isinstance(exc, RedisConnectionError) and str(exc) == "Too many connections"


class _Scripts:
    """Keys and script arguments of one lock name: shared by the sync and asyncio stores."""

    def __init__(
        self,
        prefix: str,
        name: str,
        params: LockParams,
        clock: Clock | None,
        wait_slice: float,
        wait_replicas: int = 0,
        wait_timeout: float = 0.1,
    ) -> None:
        self.keys = [namespaced_key(prefix, name, part) for part in ("lock", "q", "qx")]
        self.wait_replicas = wait_replicas
        self.wait_ms = max(1, round(wait_timeout * 1000))
        # The scripts derive wake-up list names from KEYS[1] the same way.
        self.wake_prefix = namespaced_key(prefix, name, "wake:")
        self.params = params
        self.clock = clock
        self.wait_slice = wait_slice
        self.slack = "0" if clock is None else str(PINNED_SLACK_MS)
        fence_ms = round(FENCE_TTL * 1000) if params.fencing == "clock" else 10 * 365 * 86_400_000
        # Constant arguments travel as one string: fewer arguments, less client-side encoding.
        # A caller that pins time appends its now (µs) to it on every call.
        self._packed = (
            f"{params.ttl_us} {int(params.fair)} {waiter_ttl_us(wait_slice)} {params.fencing} "
            f"{self.slack} {fence_ms}"
        )
        #: The keys lock_acquire.lua and lock_release.lua declare (they derive the others).
        self.lock_keys = self.keys[:1]
        # Releases (and give-ups) hand the lock to a fair head: never in Redlock (not fair), and
        # not with wait_replicas, whose grants count only once WAIT acknowledged them (the
        # waiter's own pipelined grant + WAIT does that; a hand-off would skip it).
        self.handoff = "1" if params.fair and not wait_replicas else "0"
        self._release_packed = f"{self.slack} {self.handoff}"
        self._packed_b, self._release_b = self._packed.encode(), self._release_packed.encode()

    def now(self) -> str:
        return "" if self.clock is None else str(self.clock.time_ns() // 1000)

    def _with_now(self, packed: str) -> str:
        return packed if self.clock is None else f"{packed} {self.clock.time_ns() // 1000}"

    def acquire_args(self, owner: str, ticket: str) -> list[str]:
        return [owner, ticket, self._with_now(self._packed)]

    def acquire_tail(self) -> str | bytes:
        """The last acquire argument, pre-encoded when it is constant (no pinned clock)."""
        return self._packed_b if self.clock is None else self._with_now(self._packed)

    def release_tail(self) -> str | bytes:
        """The last release argument, pre-encoded when it is constant."""
        return self._release_b if self.clock is None else self._with_now(self._release_packed)

    @staticmethod
    def acquire_result(reply: Any) -> AcquireDecision:
        if isinstance(reply, int):
            return AcquireDecision(True, reply, 0, None)
        wake = _text(reply[1])
        return AcquireDecision(False, 0, int(reply[0]), wake or None)

    def acquire_command(self, owner: str, ticket: str) -> list[Any]:
        return ["EVALSHA", _ACQUIRE.sha, 1, *self.lock_keys, *self.acquire_args(owner, ticket)]

    def replicated_result(self, owner: str, replies: list[Any]) -> tuple[AcquireDecision, bool]:
        """The decision of a pipelined grant + ``WAIT``, and whether it must be taken back
        (granted, but fewer replicas than ``wait_replicas`` acknowledged it)."""
        reply, acked = replies
        if isinstance(reply, BaseException):
            raise translate(reply) from reply
        decision = self.acquire_result(reply)
        if not decision.granted or isinstance(acked, BaseException):
            return decision, decision.granted
        return decision, int(acked) < self.wait_replicas

    def release_args(self, owner: str) -> list[str]:
        return [owner, self._with_now(self._release_packed)]

    def extend_args(self, owner: str, ttl: float) -> list[str]:
        return [owner, str(max(1, round(ttl * 1e6))), self.now(), self.slack]

    def leave_args(self, owner: str, ticket: str, unblock: bool) -> list[str]:
        args = [ticket, owner, self.now(), self.slack, "1" if unblock else "0"]
        if self.handoff == "1":
            # Only fair locks pass the hand-off flag: Redlock's leave keeps its five arguments.
            args.append("1")
        return args

    @staticmethod
    def handed(value: Any) -> Handoff | None:
        """The grant of a hand-off popped from a wake-up list (``g<token> <lease µs>``), or
        ``None`` for a plain wake-up (or nothing)."""
        if value is None:
            return None
        text = _text(value)
        if text[:1] != "g":
            return None
        token, lease = text[1:].split(" ")
        return Handoff(int(token), int(lease))

    def blpop_timeout(self, seconds: float) -> str:
        # BLPOP 0 would block forever; Redis >= 6 takes decimal seconds.
        return f"{max(seconds, 0.001):.3f}"


class _StoreCommands:
    """What the sync and asyncio stores prebuild alike: each script's ``EVALSHA`` command
    prefix (for ``execute_command``), its pre-packed RESP head (for the direct path) and the
    driver's error classes."""

    def __init__(self, backend: Any, scripts: _Scripts) -> None:
        self.backend = backend
        self.scripts = scripts
        self.wait_slice = scripts.wait_slice
        self._execute = backend.client.execute_command
        self._acquire_cmd = _command_prefix(backend, _ACQUIRE, scripts.lock_keys)
        self._release_cmd = _command_prefix(backend, _RELEASE, scripts.lock_keys)
        self._extend_cmd = _command_prefix(backend, _EXTEND, scripts.lock_keys)
        self._heads = _packed_heads(backend, scripts)
        self._noscript, self._errors = _driver_errors()


class _RedisLockStore(_StoreCommands):
    """The sync store over a :class:`~dsprims.backends.redis.RedisBackend`."""

    def __init__(self, backend: Any, scripts: _Scripts) -> None:
        super().__init__(backend, scripts)
        self._direct = direct(backend)
        self._encode = None if backend.is_cluster else backend.client.get_encoder().encode

    def _run(self, command: tuple[Any, ...], script: LuaScript, args: tuple[Any, ...]) -> Any:
        # backend.evalsha without its per-call work: the command is prebuilt (and, where
        # equivalent, sent pre-packed on a ready connection; see _direct). Same errors.
        try:
            if self._direct is not None:
                head = self._heads[script.name]
                return self._direct.call(head + pack_tail(args))
            return self._execute(*command, *args)
        except self._noscript:
            return self.backend.evalsha(script, self.scripts.lock_keys, args)
        except self._errors as exc:
            raise translate(exc) from exc

    def open_ticket(self, ticket: str) -> None:
        """Nothing to prepare: the wake-up list is created by the script that wakes."""

    def close_ticket(self, ticket: str) -> None:
        """Nothing to forget locally."""

    def attempt(self, owner: str, ticket: str) -> AcquireDecision:
        s = self.scripts
        if s.wait_replicas:
            return self._replicated(owner, ticket)
        reply = self._run(self._acquire_cmd, _ACQUIRE, (owner, ticket, s.acquire_tail()))
        return s.acquire_result(reply)

    def _replicated(self, owner: str, ticket: str) -> AcquireDecision:
        # The grant and WAIT travel in one pipeline: still one round trip.
        s = self.scripts
        for _ in range(2):
            pipe = self.backend.client.pipeline(transaction=False)
            pipe.execute_command(*s.acquire_command(owner, ticket))
            pipe.execute_command("WAIT", s.wait_replicas, s.wait_ms)
            replies = self.backend.call(pipe.execute, raise_on_error=False)
            if not _is_noscript(replies[0]):
                break
            # After a restart or SCRIPT FLUSH: load the script, then run the pipeline again.
            self.backend.call(self.backend.client.script_load, _ACQUIRE.source)
        decision, take_back = s.replicated_result(owner, replies)
        if take_back:
            self.leave(owner, ticket)
            raise _not_replicated(s)
        return decision

    def wait(self, ticket: str, seconds: float) -> Handoff | None:
        s = self.scripts
        key = s.wake_prefix + ticket
        if s.clock is None:
            timeout = s.blpop_timeout(seconds)
            if self._direct is None or self._encode is None:
                reply = self.backend.call(self._execute, "BLPOP", key, timeout)
            else:
                # The reply that hands the lock over is on the contended path: pre-packed on
                # the direct path like the scripts (same connections, retries and errors).
                try:
                    reply = self._direct.call(_BLPOP + pack_tail((self._encode(key), timeout)))
                except self._errors as exc:
                    raise translate(exc) from exc
            return None if reply is None else s.handed(reply[1])
        popped = self.backend.call(self._execute, "LPOP", key)
        if popped is None:
            s.clock.sleep(seconds)
        return s.handed(popped)

    def leave(self, owner: str, ticket: str) -> None:
        s = self.scripts
        self.backend.evalsha(_LEAVE, s.keys, s.leave_args(owner, ticket, False))

    def release(self, owner: str) -> bool:
        reply = self._run(self._release_cmd, _RELEASE, (owner, self.scripts.release_tail()))
        return int(reply) == 1

    def extend(self, owner: str, ttl: float) -> bool:
        args = tuple(self.scripts.extend_args(owner, ttl))
        return int(self._run(self._extend_cmd, _EXTEND, args)) == 1


class _AsyncRedisLockStore(_StoreCommands):
    """The asyncio store: commands cut off by a cancellation are finished, then ``leave`` runs.

    redis.asyncio does not cope well with a command cancelled mid-flight (it disconnects the
    connection; a cancelled BLPOP was seen retried for a minute, see FINDINGS). The acquire
    script on the direct path (:class:`~dsprims.locks._direct.AsyncDirect`) is cancellation-safe
    by itself: when cut off, it finishes in the background and registers itself in
    ``_inflight``. Every other command of an acquire (BLPOP, the fallbacks) runs as its own task,
    which a cancellation leaves running and registers. :meth:`leave` waits for what is
    registered (unblocking a BLPOP by pushing onto the waiter's own list) before it cleans up.
    """

    def __init__(self, backend: Any, scripts: _Scripts) -> None:
        super().__init__(backend, scripts)
        self._direct = async_direct(backend)
        # owner -> in-flight acquire script; ticket -> in-flight BLPOP.
        self._inflight: dict[str, asyncio.Future[Any]] = {}

    def open_ticket(self, ticket: str) -> None:
        """Nothing to prepare."""

    def close_ticket(self, ticket: str) -> None:
        """Nothing to forget locally."""

    async def _run(
        self,
        command: tuple[Any, ...],
        script: LuaScript,
        args: tuple[Any, ...],
        handle: str | None = None,
    ) -> Any:
        # See _RedisLockStore._run. With a handle, a cancellation never cuts the command off:
        # it finishes in the background and leave(handle) waits for it. The direct path does
        # that by itself (no task per call); the others run the command as a task.
        try:
            if self._direct is not None:
                head = self._heads[script.name]
                packed = head + pack_tail(args)
                if handle is None:
                    return await self._direct.call(packed)
                return await self._direct.call(packed, self._inflight, handle)
            if handle is None:
                return await self._execute(*command, *args)
            return await self._shielded(handle, self._execute(*command, *args))
        except self._noscript:
            fallback = self.backend.evalsha(script, self.scripts.lock_keys, args)
            return await (fallback if handle is None else self._shielded(handle, fallback))
        except self._errors as exc:
            raise translate(exc) from exc

    async def _shielded(self, handle: str, coro: Any) -> Any:
        task = asyncio.ensure_future(coro)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            self._inflight[handle] = task
            raise

    async def attempt(self, owner: str, ticket: str) -> AcquireDecision:
        s = self.scripts
        if s.wait_replicas:
            return await self._shielded(owner, self._replicated(owner, ticket))  # type: ignore[no-any-return]
        args = (owner, ticket, s.acquire_tail())
        return s.acquire_result(await self._run(self._acquire_cmd, _ACQUIRE, args, owner))

    async def _replicated(self, owner: str, ticket: str) -> AcquireDecision:
        s = self.scripts
        for _ in range(2):
            pipe = self.backend.client.pipeline(transaction=False)
            pipe.execute_command(*s.acquire_command(owner, ticket))
            pipe.execute_command("WAIT", s.wait_replicas, s.wait_ms)
            replies = await self.backend.call(pipe.execute, raise_on_error=False)
            if not _is_noscript(replies[0]):
                break
            await self.backend.call(self.backend.client.script_load, _ACQUIRE.source)
        decision, take_back = s.replicated_result(owner, replies)
        if take_back:
            await self.backend.evalsha(_LEAVE, s.keys, s.leave_args(owner, ticket, False))
            raise _not_replicated(s)
        return decision

    async def wait(self, ticket: str, seconds: float) -> Handoff | None:
        s = self.scripts
        key = s.wake_prefix + ticket
        if s.clock is None:
            timeout = s.blpop_timeout(seconds)
            call = self.backend.call(self._execute, "BLPOP", key, timeout)
            reply = await self._shielded(ticket, call)
            return None if reply is None else s.handed(reply[1])
        popped = await self.backend.call(self._execute, "LPOP", key)
        if popped is None:
            await s.clock.asleep(seconds)
        return s.handed(popped)

    async def leave(self, owner: str, ticket: str) -> None:
        s = self.scripts
        pending = self._inflight.pop(owner, None)
        if pending is not None:
            # The grant (if any) must land before the leave script can take it back.
            with contextlib.suppress(Exception):
                await pending
        blocked = self._inflight.pop(ticket, None) if ticket else None
        unblock = bool(blocked)
        await self._spare(
            lambda: self.backend.evalsha(_LEAVE, s.keys, s.leave_args(owner, ticket, unblock))
        )
        if blocked is not None:
            with contextlib.suppress(Exception):
                await blocked
            await self._spare(
                lambda: self.backend.call(self._execute, "DEL", s.wake_prefix + ticket)
            )

    async def _spare(self, command: Callable[[], Awaitable[Any]]) -> Any:
        """Run a clean-up command, waiting for a connection while the pool has none to spare.

        Waiters that give up together each hold a connection (their blocked BLPOP) while their
        clean-ups need one more; with the pool's limit reached, a clean-up tries again after a
        short pause (others finish meanwhile), for at most a wait slice: by then its own BLPOP
        has returned its connection. Any other failure is raised at once.
        """
        pause, waited = 0.001, 0.0
        while True:
            try:
                return await command()
            except BackendUnavailable as exc:
                if not _pool_exhausted(exc.__cause__) or waited > self.wait_slice:
                    raise
            await asyncio.sleep(pause)
            waited += pause
            pause = min(2 * pause, 0.05)

    async def release(self, owner: str) -> bool:
        s = self.scripts
        reply = await self._run(self._release_cmd, _RELEASE, (owner, s.release_tail()))
        return int(reply) == 1

    async def extend(self, owner: str, ttl: float) -> bool:
        args = tuple(self.scripts.extend_args(owner, ttl))
        return int(await self._run(self._extend_cmd, _EXTEND, args)) == 1


def _replication(backend: Any, wait_replicas: object, wait_timeout: object) -> tuple[int, float]:
    if isinstance(wait_replicas, bool) or not isinstance(wait_replicas, int):
        raise TypeError(f"wait_replicas must be an int, got {type(wait_replicas).__name__}")
    if wait_replicas < 0:
        raise ConfigurationError(f"wait_replicas must be >= 0, got {wait_replicas}")
    timeout = check_ttl(wait_timeout, "wait_timeout")
    if wait_replicas and backend.is_cluster:
        raise ConfigurationError("wait_replicas is not supported on Redis Cluster backends")
    return wait_replicas, timeout


def _lock_scripts(
    backend: Any,
    name: str,
    prefix: str,
    params: LockParams,
    clock: Clock | None,
    wait_slice: float | None,
    wait_replicas: int,
    wait_timeout: float,
) -> _Scripts:
    """The checked keys and arguments of a :class:`RedisLock` or :class:`AsyncRedisLock`."""
    return _Scripts(
        check_prefix(prefix),
        check_name(name, "name"),
        params,
        clock,
        _wait_slice(backend.client, wait_slice),
        *_replication(backend, wait_replicas, wait_timeout),
    )


def _redis_backend(resolved: Any, cls: str) -> Any:
    if getattr(resolved, "kind", None) != "redis":
        raise ConfigurationError(f"{cls} needs a Redis backend, got {type(resolved).__name__}")
    return resolved


class RedisLock(LockBase):
    """A Redis lock with fencing tokens, FIFO waiters woken by notification, and a watchdog.

    Args:
        name: the lock name (any non-empty string; data, never code).
        backend: a :class:`~dsprims.RedisBackend`, a ``redis://`` / ``redis+cluster://`` URL,
            or a redis-py client (``redis.asyncio`` for :class:`AsyncRedisLock`; it stays
            yours to close).
        ttl: lease length in seconds.
        auto_renew: renew held leases from the shared watchdog thread until released.
        on_lost: ``on_lost(lease)``, called once when a lease is found lost.
        fair: first come, first served; ``False`` lets newcomers barge in.
        max_hold: stop renewing this many seconds after the grant.
        renew_fraction: renew after this fraction of the lease.
        clock_drift: fraction of ``ttl`` the local deadline keeps in reserve.
        fencing: ``"clock"`` (default, survives a restart of a non-persistent Redis) or
            ``"counter"`` (for AOF/``WAIT`` deployments); see the module docstring.
        clock: pin time for tests (the scripts then use this clock, not the server's TIME;
            the watchdog is off with any clock but the system clock).
        prefix: key namespace.
        wait_slice: the longest single BLPOP, below the client's socket timeout (default:
            half of it, at most 2 s); waiters refresh their queue entry this often.
        wait_replicas: after each grant, ``WAIT`` (pipelined with the grant: still one round
            trip) until this many replicas acknowledged it; a grant that fewer replicas saw
            within ``wait_timeout`` seconds is taken back and ``acquire`` raises
            :class:`~dsprims.BackendUnavailable`. Use with ``fencing="counter"`` so that a
            failover to an acknowledged replica keeps the counter.
        wait_timeout: seconds ``WAIT`` may block (default 0.1). With ``wait_replicas`` a
            release wakes the next waiter, which then takes its own grant with ``WAIT``,
            instead of handing the lock over (3 round trips per contended acquisition).
    """

    def __init__(
        self,
        name: str,
        *,
        backend: object,
        ttl: float = DEFAULT_TTL,
        auto_renew: bool = True,
        on_lost: OnLost | None = None,
        fair: bool = True,
        max_hold: float | None = None,
        renew_fraction: float = 1 / 3,
        clock_drift: float = 0.01,
        fencing: FencingMode = "clock",
        clock: Clock | None = None,
        prefix: str = DEFAULT_PREFIX,
        wait_slice: float | None = None,
        wait_replicas: int = 0,
        wait_timeout: float = 0.1,
    ) -> None:
        params = LockParams(ttl, auto_renew, renew_fraction, max_hold, fair, clock_drift, fencing)
        self.backend = _redis_backend(resolve_backend(backend), "RedisLock")
        # Only a client this lock made from a URL is this lock's to close.
        self._owned = self.backend if isinstance(backend, str) else None
        scripts = _lock_scripts(
            self.backend, name, prefix, params, clock, wait_slice, wait_replicas, wait_timeout
        )
        super().__init__(
            name, _RedisLockStore(self.backend, scripts), params, clock=clock, on_lost=on_lost
        )

    def close(self) -> None:
        """Close the client this lock made from a ``redis://`` URL (idempotent).

        A backend object passed in stays open: its owner closes it. Leases still held are not
        released (they expire after their ``ttl``); release them first.
        """
        owned, self._owned = self._owned, None
        if owned is not None:
            owned.close()


class AsyncRedisLock(AsyncLockBase):
    """The asyncio twin of :class:`RedisLock`, over an :class:`~dsprims.AsyncRedisBackend`.

    Same parameters, keys and scripts (sync and async clients can contend for one lock).
    ``acquire`` is cancellation-safe: ``asyncio.wait_for(lock.acquire(), t)`` leaves no queue
    entry, wake-up list or lock key behind when it times out.
    """

    def __init__(
        self,
        name: str,
        *,
        backend: object,
        ttl: float = DEFAULT_TTL,
        auto_renew: bool = True,
        on_lost: OnLost | None = None,
        fair: bool = True,
        max_hold: float | None = None,
        renew_fraction: float = 1 / 3,
        clock_drift: float = 0.01,
        fencing: FencingMode = "clock",
        clock: Clock | None = None,
        prefix: str = DEFAULT_PREFIX,
        wait_slice: float | None = None,
        wait_replicas: int = 0,
        wait_timeout: float = 0.1,
    ) -> None:
        params = LockParams(ttl, auto_renew, renew_fraction, max_hold, fair, clock_drift, fencing)
        self.backend = _redis_backend(resolve_async_backend(backend), "AsyncRedisLock")
        self._owned = self.backend if isinstance(backend, str) else None
        scripts = _lock_scripts(
            self.backend, name, prefix, params, clock, wait_slice, wait_replicas, wait_timeout
        )
        super().__init__(
            name, _AsyncRedisLockStore(self.backend, scripts), params, clock=clock, on_lost=on_lost
        )

    async def aclose(self) -> None:
        """Close the client this lock made from a URL (see :meth:`RedisLock.close`); waits
        for the lock's background clean-ups first."""
        owned, self._owned = self._owned, None
        if owned is not None:
            await self.settle()
            await owned.aclose()
