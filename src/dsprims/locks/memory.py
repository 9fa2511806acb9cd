"""In-process locks: :class:`MemoryLock` and :class:`AsyncMemoryLock`.

The lock state of each name lives in a :class:`~dsprims.MemoryBackend` and changes only through
the pure decisions of :mod:`dsprims.locks.core`, run under the backend lock, exactly as the Redis
scripts run them on the server. Waiters block on a per-ticket event that the deciding thread
sets (no polling); waiters of sync and asyncio locks can share one backend. In fair mode a
release hands the lock directly to the head of the queue (see :mod:`dsprims.locks.core`): the
wake-up then carries the fencing token, and the woken waiter holds the lock without deciding
again. With a clock other than the system clock, waiting is done with
``clock.sleep``/``clock.asleep`` after a non-blocking check of the wake-up event, so tests
driven by :class:`~dsprims.ManualClock` advance time deterministically instead of blocking.

Guarantees: mutual exclusion among the threads and tasks of one process sharing the backend,
FIFO service (``fair=True``), tokens strictly increasing per name (floored by the wall clock,
so they keep increasing even if the state is dropped after a day idle). Not shared between
processes: use :class:`~dsprims.RedisLock` or ZooKeeper for that.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Callable

from dsprims.backends.base import DEFAULT_PREFIX, check_name, check_prefix, namespaced_key
from dsprims.backends.memory import MemoryBackend
from dsprims.backends.url import resolve_async_backend, resolve_backend
from dsprims.errors import ConfigurationError
from dsprims.locks._lock import AsyncLockBase, LockBase
from dsprims.locks.core import (
    DEFAULT_TTL,
    FENCE_TTL,
    AcquireDecision,
    AcquireRequest,
    FencingMode,
    Handoff,
    LockParams,
    LockState,
    decide_acquire,
    decide_extend,
    decide_leave,
    decide_release,
    waiter_ttl_us,
)
from dsprims.locks.lease import OnLost
from dsprims.timesource import SYSTEM_CLOCK, Clock, SystemClock

__all__ = ["AsyncMemoryLock", "MemoryLock"]

#: Seconds a memory waiter blocks at most before refreshing its queue entry.
MEMORY_WAIT_SLICE = 1.0

_REGISTRY_LOCK = threading.Lock()
_THREAD_EVENT = threading.local()
#: ``wake(handoff)``: wake a waiter; ``handoff`` is the grant it was handed, or ``None``.
Waker = Callable[[Handoff | None], None]
# backend -> ticket -> wake function; weak so a dropped backend takes its wakers with it.
_WAKERS: weakref.WeakKeyDictionary[MemoryBackend, dict[str, Waker]] = weakref.WeakKeyDictionary()


def _wakers_of(backend: MemoryBackend) -> dict[str, Waker]:
    with _REGISTRY_LOCK:
        wakers = _WAKERS.get(backend)
        if wakers is None:
            wakers = _WAKERS[backend] = {}
        return wakers


class _MemoryDecisions:
    """Runs the core decisions for one lock name on a MemoryBackend (shared by both flavours)."""

    def __init__(self, backend: MemoryBackend, key: str, params: LockParams, clock: Clock):
        self.backend = backend
        self.key = key
        self.params = params
        self.clock = clock
        self.blocking = isinstance(clock, SystemClock)
        self.wait_slice = MEMORY_WAIT_SLICE
        self.wakers = _wakers_of(backend)
        self._waiter_ttl_us = waiter_ttl_us(MEMORY_WAIT_SLICE)

    def _now(self) -> int:
        return round(self.clock.monotonic() * 1e6)

    def _wake(self, ticket: str | None, handoff: Handoff | None = None) -> None:
        if ticket is not None:
            wake = self.wakers.get(ticket)
            if wake is not None:
                wake(handoff)

    def attempt(self, owner: str, ticket: str) -> AcquireDecision:
        request = AcquireRequest(
            owner,
            ticket,
            self.params.ttl_us,
            self.params.fair,
            self._waiter_ttl_us,
            self.params.fencing,
        )
        now, wall = self._now(), self.clock.time_ns() // 1000

        def step(state: LockState | None) -> tuple[AcquireDecision, LockState]:
            return decide_acquire(state, now, wall, request)

        decision: AcquireDecision = self.backend.transact(
            self.key, step, ttl=FENCE_TTL, clock=self.clock
        )
        self._wake(decision.wake)
        return decision

    def leave(self, owner: str, ticket: str) -> None:
        now, wall, handoff = self._now(), self.clock.time_ns() // 1000, self.params.fair
        decision = self.backend.transact(
            self.key,
            lambda state: decide_leave(state, now, ticket, owner, handoff=handoff, wall_us=wall),
            ttl=FENCE_TTL,
            clock=self.clock,
        )
        self._wake(decision.wake, decision.handoff)

    def release(self, owner: str) -> bool:
        now, wall, handoff = self._now(), self.clock.time_ns() // 1000, self.params.fair
        decision = self.backend.transact(
            self.key,
            lambda state: decide_release(state, now, owner, handoff=handoff, wall_us=wall),
            ttl=FENCE_TTL,
            clock=self.clock,
        )
        self._wake(decision.wake, decision.handoff)
        return decision.released

    def extend(self, owner: str, ttl: float) -> bool:
        now, ttl_us = self._now(), max(1, round(ttl * 1e6))
        decision = self.backend.transact(
            self.key,
            lambda state: decide_extend(state, now, owner, ttl_us),
            ttl=FENCE_TTL,
            clock=self.clock,
        )
        return decision.extended

    def state(self) -> LockState | None:
        """The stored state (for tests and diagnostics)."""
        state: LockState | None = self.backend.get(self.key)
        return state


class _Tickets:
    """The hand-offs delivered to each open ticket of one store (``box``: a list that holds
    the grant until the waiter takes it). Shared by the sync and asyncio stores."""

    def __init__(self, decisions: _MemoryDecisions) -> None:
        self.decisions = decisions
        self.boxes: dict[str, list[Handoff]] = {}

    def open(self, ticket: str, notify: Callable[[], None]) -> None:
        box: list[Handoff] = []

        def wake(handoff: Handoff | None) -> None:
            if handoff is not None:
                box[:] = [handoff]  # the latest grant only, like the Redis wake-up list
            notify()

        self.boxes[ticket] = box
        self.decisions.wakers[ticket] = wake

    def close(self, ticket: str) -> None:
        self.decisions.wakers.pop(ticket, None)
        self.boxes.pop(ticket, None)

    def take(self, ticket: str) -> Handoff | None:
        """The grant handed to ``ticket`` (once), or ``None``."""
        box = self.boxes.get(ticket)
        return box.pop() if box else None

    def attempt(self, owner: str, ticket: str) -> AcquireDecision:
        if ticket:
            # The attempt sees the current state: a hand-off still in the box is moot (found as
            # its own grant, or gone). The Redis script empties the wake-up list the same way
            # when it queues the caller or finds it holding the lock. A hand-off taken after
            # this attempt was therefore made after it: the lease may count from before it.
            self.take(ticket)
        return self.decisions.attempt(owner, ticket)

    def leave(self, owner: str, ticket: str) -> None:
        self.decisions.leave(owner, ticket)
        self.take(ticket)  # a hand-off that reached it was taken back by the leave


class _MemoryLockStore:
    """The sync store: waiters block on a ``threading.Event`` per ticket."""

    def __init__(self, decisions: _MemoryDecisions) -> None:
        self.decisions = decisions
        self.wait_slice = decisions.wait_slice
        self.tickets = _Tickets(decisions)
        self.attempt = self.tickets.attempt
        self.leave = self.tickets.leave
        self.release = decisions.release
        self.extend = decisions.extend
        self._events: dict[str, threading.Event] = {}

    def open_ticket(self, ticket: str) -> None:
        # One reusable event per thread: creating an Event per acquire costs more than the
        # decision itself. A late wake-up meant for an earlier ticket of this thread only
        # causes one extra attempt (hand-off tokens are kept per ticket, never mixed up).
        event = getattr(_THREAD_EVENT, "event", None)
        if event is None:
            event = _THREAD_EVENT.event = threading.Event()
        event.clear()
        self._events[ticket] = event
        self.tickets.open(ticket, event.set)

    def close_ticket(self, ticket: str) -> None:
        self.tickets.close(ticket)
        self._events.pop(ticket, None)

    def wait(self, ticket: str, seconds: float) -> Handoff | None:
        event = self._events[ticket]
        if not self.tickets.boxes.get(ticket):
            if self.decisions.blocking:
                event.wait(seconds)
            elif not event.is_set():
                self.decisions.clock.sleep(seconds)
        event.clear()
        return self.tickets.take(ticket)


class _AsyncMemoryLockStore:
    """The asyncio store: waiters await an ``asyncio.Event`` set thread-safely."""

    def __init__(self, decisions: _MemoryDecisions) -> None:
        self.decisions = decisions
        self.wait_slice = decisions.wait_slice
        self.tickets = _Tickets(decisions)
        self._events: dict[str, asyncio.Event] = {}

    def open_ticket(self, ticket: str) -> None:
        loop = asyncio.get_running_loop()
        event = asyncio.Event()

        def notify() -> None:
            # A closed loop means the waiter is gone: nobody to wake.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

        self._events[ticket] = event
        self.tickets.open(ticket, notify)

    def close_ticket(self, ticket: str) -> None:
        self.tickets.close(ticket)
        self._events.pop(ticket, None)

    async def attempt(self, owner: str, ticket: str) -> AcquireDecision:
        return self.tickets.attempt(owner, ticket)

    async def wait(self, ticket: str, seconds: float) -> Handoff | None:
        event = self._events[ticket]
        if not self.tickets.boxes.get(ticket):
            if self.decisions.blocking:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(seconds):
                        await event.wait()
            elif not event.is_set():
                await self.decisions.clock.asleep(seconds)
        event.clear()
        return self.tickets.take(ticket)

    async def leave(self, owner: str, ticket: str) -> None:
        self.tickets.leave(owner, ticket)

    async def release(self, owner: str) -> bool:
        return self.decisions.release(owner)

    async def extend(self, owner: str, ttl: float) -> bool:
        return self.decisions.extend(owner, ttl)


def _decisions(
    store: object,
    resolved: object,
    cls: str,
    name: str,
    prefix: str,
    params: LockParams,
    clock: Clock | None,
) -> _MemoryDecisions:
    """The checked decisions of a :class:`MemoryLock` or :class:`AsyncMemoryLock` on ``store``."""
    if not isinstance(store, MemoryBackend):
        raise ConfigurationError(f"{cls} needs a memory backend, got {type(resolved).__name__}")
    key = namespaced_key(check_prefix(prefix), check_name(name, "name"), "lock")
    return _MemoryDecisions(store, key, params, clock or SYSTEM_CLOCK)


class MemoryLock(LockBase):
    """A lock with fencing tokens for the threads of one process.

    Args:
        name: the lock name (any non-empty string; data, never code).
        backend: a :class:`~dsprims.MemoryBackend` (default: a new one) or ``"memory://"``;
            locks of one name share state only through the same backend.
        ttl: lease length in seconds.
        auto_renew: renew held leases in the background (the shared watchdog thread).
        fair: first come, first served; ``False`` lets newcomers barge in.
        max_hold: stop renewing this many seconds after the grant.
        renew_fraction: renew after this fraction of the lease.
        clock_drift: fraction of ``ttl`` the local deadline keeps in reserve.
        fencing: ``"clock"`` (default) or ``"counter"``; see :mod:`dsprims.locks.core`.
        on_lost: ``on_lost(lease)``, called once when a lease is lost.
        clock: the clock for deadlines and waiting (default: the system clock; with any
            other clock the watchdog is off and leases renew only through ``extend()``).
        prefix: key namespace.

    Example:
        >>> lock = MemoryLock("report")
        >>> with lock.acquire() as lease:
        ...     lease.token > 0
        True
    """

    def __init__(
        self,
        name: str,
        *,
        backend: object = None,
        ttl: float = DEFAULT_TTL,
        auto_renew: bool = True,
        fair: bool = True,
        max_hold: float | None = None,
        renew_fraction: float = 1 / 3,
        clock_drift: float = 0.01,
        fencing: FencingMode = "clock",
        on_lost: OnLost | None = None,
        clock: Clock | None = None,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        params = LockParams(ttl, auto_renew, renew_fraction, max_hold, fair, clock_drift, fencing)
        resolved = resolve_backend(backend)
        decisions = _decisions(resolved, resolved, "MemoryLock", name, prefix, params, clock)
        self.backend = resolved
        store = _MemoryLockStore(decisions)
        super().__init__(name, store, params, clock=clock, on_lost=on_lost)


class AsyncMemoryLock(AsyncLockBase):
    """The asyncio twin of :class:`MemoryLock` (same parameters; may share its backend).

    Example:
        >>> import asyncio
        >>> async def main() -> int:
        ...     async with await AsyncMemoryLock("job").acquire() as lease:
        ...         return lease.token
        >>> asyncio.run(main()) > 0
        True
    """

    def __init__(
        self,
        name: str,
        *,
        backend: object = None,
        ttl: float = DEFAULT_TTL,
        auto_renew: bool = True,
        fair: bool = True,
        max_hold: float | None = None,
        renew_fraction: float = 1 / 3,
        clock_drift: float = 0.01,
        fencing: FencingMode = "clock",
        on_lost: OnLost | None = None,
        clock: Clock | None = None,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        params = LockParams(ttl, auto_renew, renew_fraction, max_hold, fair, clock_drift, fencing)
        resolved = resolve_async_backend(backend)
        shared = getattr(resolved, "store", None)
        decisions = _decisions(shared, resolved, "AsyncMemoryLock", name, prefix, params, clock)
        self.backend = resolved
        store = _AsyncMemoryLockStore(decisions)
        super().__init__(name, store, params, clock=clock, on_lost=on_lost)
