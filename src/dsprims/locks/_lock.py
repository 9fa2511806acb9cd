"""The thin shells every lock class shares: the acquire loop, leases and the watchdog.

A lock is a *store* (what one backend does atomically: attempt, wait to be woken, leave the
queue, release, extend; see :class:`LockStore`) plus this shell, which runs the pure decisions
of :mod:`dsprims.locks.core` in a loop:

1. ``attempt`` (grants, or queues the caller's ticket and says how long the lease in the way
   lasts);
2. ``wait`` on the ticket's wake-up channel for :func:`~dsprims.locks.core.plan_wait` seconds
   (woken early by a release or by a waiter that gives up), then attempt again; in fair mode
   the wake-up may carry a grant instead (:class:`~dsprims.locks.core.Handoff`): the releaser
   handed the lock over, and the waiter holds it without asking again (its lease counts from
   just before its last attempt; see :func:`~dsprims.locks.core.refresh_after_handoff` for
   when it is extended at once);
3. on timeout, error or cancellation, ``leave`` (drops the ticket, and releases the lock if a
   grant or a hand-off raced with the give-up, passing it on, so nothing is left behind).

The sync and the asyncio shells below are the same few lines, one with ``await``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import secrets
import threading
import weakref
from types import TracebackType
from typing import Any, Protocol, TypeVar

from dsprims.backends.base import check_name
from dsprims.errors import BackendError, LockError, LockLost, LockNotAcquired
from dsprims.locks._scheduler import shared_scheduler
from dsprims.locks.core import (
    AcquireDecision,
    Handoff,
    LockParams,
    check_timeout,
    plan_renewal,
    plan_wait,
    refresh_after_handoff,
)
from dsprims.locks.lease import AsyncLease, Lease, LeaseBase, OnLost
from dsprims.timesource import SYSTEM_CLOCK, Clock, SystemClock

__all__ = ["AsyncLockBase", "AsyncLockStore", "LockBase", "LockStore"]

logger = logging.getLogger("dsprims.locks")

# Leases entered with ``with lock:`` / ``async with lock:``, innermost last. A context variable
# keeps threads and tasks apart without a per-lock thread-local.
_HELD: contextvars.ContextVar[tuple[tuple[object, LeaseBase], ...]] = contextvars.ContextVar(
    "dsprims_locks_held", default=()
)

#: Seconds between renewal retries while the store is unreachable (capped by the lease).
RENEW_RETRY = 0.25


class LockStore(Protocol):
    """What one backend does atomically for one lock name (sync)."""

    wait_slice: float

    def open_ticket(self, ticket: str) -> None:
        """Prepare the wake-up channel of ``ticket`` (before its first attempt)."""
        ...

    def close_ticket(self, ticket: str) -> None:
        """Forget local wake-up state of ``ticket`` (after the last attempt)."""
        ...

    def attempt(self, owner: str, ticket: str) -> AcquireDecision:
        """One grant attempt; queues ``ticket`` (if not empty) when not granted."""
        ...

    def wait(self, ticket: str, seconds: float) -> Handoff | None:
        """Block until ``ticket`` is woken or ``seconds`` pass.

        Returns the grant when the wake-up handed the lock over, else ``None``.
        """
        ...

    def leave(self, owner: str, ticket: str) -> None:
        """Give up: drop ``ticket`` from the queue, release a grant ``owner`` may hold."""
        ...

    def release(self, owner: str) -> bool:
        """Release if ``owner`` holds the lock; wake the next waiter."""
        ...

    def extend(self, owner: str, ttl: float) -> bool:
        """Extend ``owner``'s lease to ``ttl`` seconds from now; never re-create it."""
        ...


class AsyncLockStore(Protocol):
    """The asyncio twin of :class:`LockStore`."""

    wait_slice: float

    def open_ticket(self, ticket: str) -> None:
        """See :meth:`LockStore.open_ticket`."""
        ...

    def close_ticket(self, ticket: str) -> None:
        """See :meth:`LockStore.close_ticket`."""
        ...

    async def attempt(self, owner: str, ticket: str) -> AcquireDecision:
        """See :meth:`LockStore.attempt`."""
        ...

    async def wait(self, ticket: str, seconds: float) -> Handoff | None:
        """See :meth:`LockStore.wait`."""
        ...

    async def leave(self, owner: str, ticket: str) -> None:
        """See :meth:`LockStore.leave`; also finishes commands cut off by a cancellation."""
        ...

    async def release(self, owner: str) -> bool:
        """See :meth:`LockStore.release`."""
        ...

    async def extend(self, owner: str, ttl: float) -> bool:
        """See :meth:`LockStore.extend`."""
        ...


class _Secrets:
    """Random hex strings from the OS CSPRNG, read in 4 KiB blocks.

    ``os.urandom`` costs a system call (over 10 µs on some VMs) and every acquire needs two
    secrets; reading ahead keeps the bytes from the same CSPRNG. Each block is hex-encoded once
    and handed out by offset (no copy of the rest of the block per call); every character is
    handed out at most once. The buffer is dropped in a forked child so that parent and child
    never hand out the same bytes.
    """

    _BLOCK = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = ""
        self._pos = 0

    def hex(self, nbytes: int) -> str:
        width = 2 * nbytes
        with self._lock:
            pos = self._pos
            end = pos + width
            if end > len(self._buffer):
                self._buffer = secrets.token_bytes(max(self._BLOCK, nbytes)).hex()
                pos, end = 0, width
            self._pos = end
            return self._buffer[pos:end]

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._buffer = ""
        self._pos = 0


_SECRETS = _Secrets()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_SECRETS._reset)


def _new_owner() -> str:
    # 128 bits from the OS CSPRNG: a non-owner cannot guess its way into release/extend.
    return _SECRETS.hex(16)


def _new_ticket() -> str:
    return _SECRETS.hex(8)


class _Common:
    """Configuration and watchdog planning shared by the sync and asyncio shells."""

    def __init__(
        self, name: str, params: LockParams, clock: Clock | None, on_lost: OnLost | None
    ) -> None:
        self.name = check_name(name, "name")
        self.params = params
        #: The clock leases keep their deadlines on (the system clock unless one was passed).
        self.clock: Clock = SYSTEM_CLOCK if clock is None else clock
        # The watchdog waits in real time; a virtual clock (tests) would make its renewals fire
        # at arbitrary points of the test, so with one, leases renew only through extend().
        self._watchdog = isinstance(self.clock, SystemClock)
        if on_lost is not None and not callable(on_lost):
            raise TypeError("on_lost must be callable or None")
        self.on_lost = on_lost

    def _plan(self, lease: LeaseBase) -> tuple[str, float]:
        """The watchdog's next move for ``lease``: (action, seconds or ttl).

        ``("stop", 0)``: nothing more to do; ``("sleep", s)``: look again in ``s`` seconds;
        ``("renew", ttl)``: extend now by ``ttl``; ``("alarm", s)``: no more renewals, check
        for loss at the deadline (fires ``on_lost``).
        """
        if lease.released or lease.lost:
            return "stop", 0.0
        now = self.clock.monotonic()
        plan = (
            plan_renewal(lease.granted_at, lease.acquired_at, self.params, lease.ttl)
            if self.params.auto_renew
            else None
        )
        if plan is None:
            deadline = lease.deadline
            if deadline is None or lease._on_lost is None:
                return "stop", 0.0
            return "alarm", max(0.0, deadline - now) + 0.001
        if now < plan.at:
            return "sleep", plan.at - now
        return "renew", plan.ttl

    def _lease_options(self, start: float, ttl: float) -> dict[str, Any]:
        """The lease settings shared by sync and async grants of ``ttl`` made at ``start``."""
        return {
            "clock": self.clock,
            "ttl": ttl,
            "start": start,
            "clock_drift": self.params.clock_drift,
            "on_lost": self.on_lost,
        }

    def _watch_delay(self, lease: LeaseBase | None, delay: float | None) -> float | None:
        """Seconds until the watchdog should look at ``lease`` again, or ``None`` to stop."""
        if lease is None or not self._watchdog:
            return None
        if delay is None:
            action, value = self._plan(lease)
            if action == "stop":
                return None
            delay = 0.0 if action == "renew" else value
        return delay

    def _handed(self, start: float, handoff: Handoff) -> tuple[float, float, bool]:
        """A grant handed over on a wake-up after the attempt sent at ``start``: its lease
        start and length, and whether it must first be extended (then to ``ttl`` from now)."""
        lease = handoff.lease_us / 1e6
        renewing = self._watchdog and self.params.auto_renew
        now = self.clock.monotonic()
        if refresh_after_handoff(start, now, lease, self.params, renewing):
            return now, self.params.ttl, True
        return start, lease, False

    def _retry_delay(self, lease: LeaseBase) -> float:
        remaining = lease.remaining or 0.0
        return max(0.001, min(RENEW_RETRY, remaining / 2))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, ttl={self.params.ttl})"


class LockBase(_Common):
    """A sync lock over a :class:`LockStore`; see the concrete classes for parameters."""

    def __init__(
        self,
        name: str,
        store: LockStore,
        params: LockParams,
        *,
        clock: Clock | None = None,
        on_lost: OnLost | None = None,
    ) -> None:
        super().__init__(name, params, clock, on_lost)
        self._store = store

    def acquire(self, timeout: float | None = None) -> Lease:
        """Wait for the lock (first come, first served unless ``fair=False``).

        Args:
            timeout: seconds to wait at most (``None``: forever; ``0``: one attempt).

        Returns:
            The :class:`~dsprims.Lease`, with its fencing token.

        Raises:
            LockNotAcquired: ``timeout`` passed.
            BackendUnavailable: the store could not be reached (nothing is left queued).
        """
        lease = self._acquire(check_timeout(timeout), queue=True)
        if lease is None:
            raise LockNotAcquired(f"lock {self.name!r} not acquired within {timeout}s")
        return lease

    def try_acquire(self) -> Lease | None:
        """One attempt that never waits (and never queues): the lease, or ``None``."""
        return self._acquire(0.0, queue=False)

    def _acquire(self, timeout: float | None, *, queue: bool) -> Lease | None:
        store, clock = self._store, self.clock
        owner = _new_owner()
        ticket = _new_ticket() if queue and timeout != 0 else ""
        deadline = None if timeout is None else clock.monotonic() + timeout
        if ticket:
            store.open_ticket(ticket)
        try:
            start, lease = clock.monotonic(), self.params.ttl
            decision = store.attempt(owner, ticket)
            while not decision.granted:
                wait = plan_wait(decision.wait_us, clock.monotonic(), deadline, store.wait_slice)
                if wait is None:
                    if ticket:
                        store.leave(owner, ticket)
                    return None
                handoff = store.wait(ticket, wait)
                if handoff is not None:
                    # Handed over after the attempt sent at ``start``: held since then.
                    start, lease, refresh = self._handed(start, handoff)
                    if not refresh or store.extend(owner, lease):
                        decision = AcquireDecision(True, handoff.token)
                        break
                # A plain wake-up, or a hand-off that is already gone: ask (again).
                start, lease = clock.monotonic(), self.params.ttl
                decision = store.attempt(owner, ticket)
        except BaseException:
            # A lost reply may hide a grant or a queue entry: take both back before raising.
            with contextlib.suppress(Exception):
                store.leave(owner, ticket)
            raise
        finally:
            if ticket:
                store.close_ticket(ticket)
        return self._grant(owner, decision.token, start, lease)

    def _grant(self, owner: str, token: int, start: float, ttl: float) -> Lease:
        options = self._lease_options(start, ttl)
        lease = Lease(self.name, token, owner=owner, driver=self, **options)
        self._watch(weakref.ref(lease))
        return lease

    # -- LeaseDriver ----------------------------------------------------------------------------

    def release_lease(self, lease: Lease) -> None:
        """Release ``lease`` in the store (:class:`~dsprims.locks.lease.LeaseDriver`)."""
        if not self._store.release(lease.owner):
            raise LockLost(f"lock {self.name!r} was no longer held by this lease at release")

    def extend_lease(self, lease: Lease, ttl: float | None) -> float:
        """Extend ``lease`` in the store (:class:`~dsprims.locks.lease.LeaseDriver`)."""
        ttl = self.params.ttl if ttl is None else ttl
        if not self._store.extend(lease.owner, ttl):
            raise LockLost(f"lock {self.name!r} was no longer held by this lease at extend")
        return ttl

    # -- watchdog -------------------------------------------------------------------------------

    def _watch(self, ref: weakref.ref[Lease], delay: float | None = None) -> None:
        lease = ref()
        delay = self._watch_delay(lease, delay)
        if lease is None or delay is None:
            return
        lease._renewal = shared_scheduler().call_later(delay, lambda: self._tick(ref))

    def _tick(self, ref: weakref.ref[Lease]) -> None:
        # Holds only a weak reference: a lease dropped without release stops being renewed
        # and simply expires in the store.
        lease = ref()
        if lease is None:
            return
        action, value = self._plan(lease)
        if action == "renew":
            try:
                lease.extend(value)
            except LockError:
                return  # lost (on_lost fired) or released meanwhile
            except BackendError:
                logger.warning("renewal of lock %r failed; retrying", self.name)
                self._watch(ref, self._retry_delay(lease))
                return
        elif action == "alarm":
            lease.lost  # noqa: B018 - reading it marks the loss and fires on_lost
            if lease.lost:
                return
        elif action == "stop":
            return
        self._watch(ref)

    # -- with lock: -----------------------------------------------------------------------------

    def __enter__(self) -> Lease:
        return _push_held(self, self.acquire())

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _pop_held(self, Lease).__exit__(exc_type, exc, tb)


_L = TypeVar("_L", bound=LeaseBase)


def _push_held(lock: object, lease: _L) -> _L:
    """Record ``lease`` as entered with ``with lock:`` in this thread or task; returns it."""
    _HELD.set((*_HELD.get(), (lock, lease)))
    return lease


def _pop_held(lock: object, kind: type[_L]) -> _L:
    """Forget and return the innermost lease entered with ``with lock:`` (a ``kind``)."""
    held = _HELD.get()
    if held and held[-1][0] is lock:  # the usual case: the innermost entry is this lock's
        i = len(held) - 1
        _HELD.set(held[:i])
    else:
        for i in range(len(held) - 2, -1, -1):
            if held[i][0] is lock:
                _HELD.set(held[:i] + held[i + 1 :])
                break
        else:
            raise RuntimeError("lock exited without a matching enter")
    lease = held[i][1]
    assert isinstance(lease, kind)
    return lease


class AsyncLockBase(_Common):
    """An asyncio lock over an :class:`AsyncLockStore`.

    ``acquire`` is cancellation-safe: a cancelled or timed-out wait (``asyncio.wait_for``)
    leaves no queue entry, wake-up list or lock key behind, and a grant that raced with the
    cancellation is released before the cancellation propagates.
    """

    def __init__(
        self,
        name: str,
        store: AsyncLockStore,
        params: LockParams,
        *,
        clock: Clock | None = None,
        on_lost: OnLost | None = None,
    ) -> None:
        super().__init__(name, params, clock, on_lost)
        self._store = store
        self._tasks: set[asyncio.Task[Any]] = set()

    async def acquire(self, timeout: float | None = None) -> AsyncLease:  # noqa: ASYNC109
        """See :meth:`LockBase.acquire`."""
        lease = await self._acquire(check_timeout(timeout), queue=True)
        if lease is None:
            raise LockNotAcquired(f"lock {self.name!r} not acquired within {timeout}s")
        return lease

    async def try_acquire(self) -> AsyncLease | None:
        """See :meth:`LockBase.try_acquire`."""
        return await self._acquire(0.0, queue=False)

    async def _acquire(self, limit: float | None, *, queue: bool) -> AsyncLease | None:
        store, clock = self._store, self.clock
        owner = _new_owner()
        ticket = _new_ticket() if queue and limit != 0 else ""
        deadline = None if limit is None else clock.monotonic() + limit
        if ticket:
            store.open_ticket(ticket)
        try:
            start, lease = clock.monotonic(), self.params.ttl
            decision = await store.attempt(owner, ticket)
            while not decision.granted:
                wait = plan_wait(decision.wait_us, clock.monotonic(), deadline, store.wait_slice)
                if wait is None:
                    if ticket:
                        await store.leave(owner, ticket)
                    return None
                handoff = await store.wait(ticket, wait)
                if handoff is not None:  # see LockBase._acquire
                    start, lease, refresh = self._handed(start, handoff)
                    if not refresh or await store.extend(owner, lease):
                        decision = AcquireDecision(True, handoff.token)
                        break
                start, lease = clock.monotonic(), self.params.ttl
                decision = await store.attempt(owner, ticket)
        except BaseException:
            await self._cleanup(owner, ticket)
            raise
        finally:
            if ticket:
                store.close_ticket(ticket)
        return self._grant(owner, decision.token, start, lease)

    async def _cleanup(self, owner: str, ticket: str) -> None:
        # Runs the clean-up as its own task and waits for it, so that wait_for() returns only
        # once nothing is left behind; a second cancellation leaves it running in background.
        task = asyncio.ensure_future(self._store.leave(owner, ticket))
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.shield(task)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("lock %r: background clean-up failed: %r", self.name, task.exception())

    async def settle(self) -> None:
        """Wait for background clean-ups and renewals started by this lock to finish."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _grant(self, owner: str, token: int, start: float, ttl: float) -> AsyncLease:
        options = self._lease_options(start, ttl)
        lease = AsyncLease(self.name, token, owner=owner, driver=self, **options)
        self._watch(weakref.ref(lease))
        return lease

    async def release_lease(self, lease: AsyncLease) -> None:
        """See :meth:`LockBase.release_lease`."""
        if not await self._store.release(lease.owner):
            raise LockLost(f"lock {self.name!r} was no longer held by this lease at release")

    async def extend_lease(self, lease: AsyncLease, ttl: float | None) -> float:
        """See :meth:`LockBase.extend_lease`."""
        ttl = self.params.ttl if ttl is None else ttl
        if not await self._store.extend(lease.owner, ttl):
            raise LockLost(f"lock {self.name!r} was no longer held by this lease at extend")
        return ttl

    def _watch(self, ref: weakref.ref[AsyncLease], delay: float | None = None) -> None:
        lease = ref()
        delay = self._watch_delay(lease, delay)
        if lease is None or delay is None:
            return
        loop = asyncio.get_running_loop()
        handle = loop.call_later(delay, self._spawn, ref)
        lease._renewal = handle.cancel

    def _spawn(self, ref: weakref.ref[AsyncLease]) -> None:
        task = asyncio.ensure_future(self._tick(ref))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    async def _tick(self, ref: weakref.ref[AsyncLease]) -> None:
        lease = ref()
        if lease is None:
            return
        action, value = self._plan(lease)
        if action == "renew":
            try:
                await lease.extend(value)
            except LockError:
                return
            except BackendError:
                logger.warning("renewal of lock %r failed; retrying", self.name)
                self._watch(ref, self._retry_delay(lease))
                return
        elif action == "alarm":
            if lease.lost:
                return
        elif action == "stop":
            return
        self._watch(ref)

    async def __aenter__(self) -> AsyncLease:
        return _push_held(self, await self.acquire())

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await _pop_held(self, AsyncLease).__aexit__(exc_type, exc, tb)
