"""Leases: what ``acquire()`` returns, and how a holder learns that it lost the lock.

A lease carries the lock ``name``, the fencing ``token`` of the grant and a *local deadline* on
the lock's monotonic clock: the instant, measured from just before the granting request was
sent and shortened by the clock-drift allowance, after which the store may already have handed
the lock to someone else. Reading :attr:`Lease.lost` compares that deadline with the clock, so a
holder that was paused (GC, SIGSTOP, a swapped-out VM) knows it lost the lock the moment it
resumes, with no round trip. A lease is also lost when its driver says so
(:meth:`Lease._mark_lost`): a renewal or release found another owner, or a ZooKeeper session
ended. Loss is final: a lost lease never becomes valid again, and :meth:`Lease.release` /
:meth:`Lease.extend` of a lost lease raise :class:`~dsprims.LockLost` instead of succeeding
silently. ``on_lost`` is called exactly once, from whichever thread or task notices first.

What a lease does not guarantee: the deadline bounds what the *holder* believes; a write that
was already in flight when the lease ended can still land. That is what fencing tokens are for:
pass ``lease.token`` to the resource (:class:`~dsprims.FencedStore`, or a SQL
``WHERE fence <= :token``) and stale writes are rejected there.

Drivers. A lease talks to the lock that made it through a :class:`LeaseDriver`
(:class:`AsyncLeaseDriver` for :class:`AsyncLease`). To build a new lock kind on these types:

* create ``Lease(name, token, owner=..., driver=self, clock=clock, ttl=ttl, start=t0)`` where
  ``t0 = clock.monotonic()`` read just before the granting request (``ttl=None`` means the
  lease has no local deadline and is ended only by ``_mark_lost``);
* implement ``release_lease(lease)`` (raise :class:`~dsprims.LockLost` if the store says the lease
  is not held any more) and ``extend_lease(lease, ttl) -> float | None`` (return the TTL granted,
  counted from just before the request, or ``None`` for "no local deadline"; raise ``LockLost``
  when the lease is gone); the lease updates its deadline and loss state around those calls;
* call ``lease._mark_lost(reason)`` from any thread when the store reports the loss (e.g. a
  ZooKeeper session LOST); ``lease._set_deadline(t)`` moves the local deadline (e.g. to
  ``last heartbeat + session timeout`` while SUSPENDED).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

from dsprims.errors import LockLost, LockNotOwned
from dsprims.locks.core import check_ttl, lease_deadline
from dsprims.timesource import Clock

__all__ = ["AsyncLease", "AsyncLeaseDriver", "Lease", "LeaseBase", "LeaseDriver", "OnLost"]

logger = logging.getLogger(__name__)

#: ``on_lost(lease)``: called once when a lease is found lost; its return value is ignored and
#: its exceptions are logged, never raised into the code that noticed the loss.
OnLost = Callable[["LeaseBase"], object]


class LeaseDriver(Protocol):
    """What a :class:`Lease` needs from the lock that granted it."""

    def release_lease(self, lease: Lease) -> None:
        """Give the lock up in the store; raise ``LockLost`` if it was not held any more."""
        ...

    def extend_lease(self, lease: Lease, ttl: float | None) -> float | None:
        """Extend the lease to ``ttl`` seconds from now; return the TTL granted (or ``None``).

        ``ttl=None`` asks for the lock's own default lease length.

        Raise ``LockLost`` if the store no longer has this lease (it is never re-created).
        """
        ...


class AsyncLeaseDriver(Protocol):
    """The asyncio twin of :class:`LeaseDriver`."""

    async def release_lease(self, lease: AsyncLease) -> None:
        """See :meth:`LeaseDriver.release_lease`."""
        ...

    async def extend_lease(self, lease: AsyncLease, ttl: float | None) -> float | None:
        """See :meth:`LeaseDriver.extend_lease`."""
        ...


class LeaseBase:
    """State and loss detection shared by :class:`Lease` and :class:`AsyncLease`.

    Attributes:
        name: the lock name.
        token: the fencing token of this grant (strictly increasing per lock name).
        owner: the secret that identifies this grant to the store (never logged).
        ttl: the lease length last granted, in seconds (``None``: no local deadline).
        acquired_at: the lock clock's monotonic time just before the grant was requested.
    """

    __slots__ = (
        "__weakref__",
        "_clock",
        "_deadline",
        "_drift",
        "_guard",
        "_lost_reason",
        "_on_lost",
        "_released",
        "_renewal",
        "acquired_at",
        "granted_at",
        "name",
        "owner",
        "token",
        "ttl",
    )

    def __init__(
        self,
        name: str,
        token: int,
        *,
        owner: str,
        clock: Clock,
        ttl: float | None,
        start: float | None = None,
        clock_drift: float = 0.01,
        on_lost: OnLost | None = None,
    ) -> None:
        self.name = name
        self.token = token
        self.owner = owner
        self._clock = clock
        self._drift = clock_drift
        self.acquired_at = clock.monotonic() if start is None else start
        #: When the latest grant or extension was requested (lock clock, monotonic seconds).
        self.granted_at = self.acquired_at
        self.ttl = None if ttl is None else check_ttl(ttl)
        self._deadline: float | None = None
        self._set_ttl(self.acquired_at, self.ttl)
        self._on_lost = on_lost
        self._lost_reason: str | None = None
        self._released = False
        self._guard = threading.Lock()
        #: Cancels the watchdog entry of this lease (set by the lock); ``None`` when none.
        self._renewal: Callable[[], None] | None = None

    # -- loss detection -------------------------------------------------------------------------

    @property
    def lost(self) -> bool:
        """Whether the lease is lost: its local deadline passed, or its driver reported it.

        No round trip: a holder that was paused past its lease sees ``True`` as soon as it
        resumes. Once ``True`` it stays ``True``. A released lease is not lost.
        """
        if self._lost_reason is not None:
            return True
        if self._released:
            return False
        deadline = self._deadline
        if deadline is not None and self._clock.monotonic() >= deadline:
            self._mark_lost("the lease expired (its local deadline passed)")
            return True
        return False

    @property
    def lost_reason(self) -> str | None:
        """Why the lease was lost, or ``None`` while it is not (see :attr:`lost`)."""
        return self._lost_reason if self.lost else None

    @property
    def released(self) -> bool:
        """Whether :meth:`release` completed (the lock was given back)."""
        return self._released

    @property
    def remaining(self) -> float | None:
        """Seconds until the local deadline (0.0 once lost or released; ``None``: no deadline)."""
        if self._released or self.lost:
            return 0.0
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - self._clock.monotonic())

    @property
    def deadline(self) -> float | None:
        """The local deadline on the lock clock's monotonic time (``None``: none)."""
        return self._deadline

    def check(self) -> None:
        """Raise :class:`~dsprims.LockLost` if the lease is lost, else return.

        Call it before every step of a critical section that must not run without the lock;
        pair it with the fencing token for writes that may still be in flight.

        Raises:
            LockLost: the lease expired or was taken over.
            LockNotOwned: the lease was released.
        """
        if self.lost:
            raise LockLost(f"lock {self.name!r} (token {self.token}) lost: {self._lost_reason}")
        if self._released:
            raise LockNotOwned(f"lock {self.name!r} (token {self.token}) was released")

    # -- driver hooks ---------------------------------------------------------------------------

    def _mark_lost(self, reason: str) -> bool:
        """Declare the lease lost (idempotent, thread-safe); fire ``on_lost`` the first time.

        For drivers: call it when the store reports the loss (a renewal or release found
        another owner, a ZooKeeper session LOST). Returns whether this call marked it.
        """
        with self._guard:
            if self._lost_reason is not None or self._released:
                return False
            self._lost_reason = reason
        self._cancel_renewal()
        callback = self._on_lost
        if callback is not None:
            try:
                callback(self)
            except Exception:
                logger.exception("on_lost callback of lock %r raised", self.name)
        return True

    def _set_deadline(self, deadline: float | None) -> None:
        """Move the local deadline (monotonic seconds on the lock clock; ``None``: none)."""
        self._deadline = deadline

    def _set_ttl(self, start: float, ttl: float | None) -> None:
        """Set the deadline for a grant or extension of ``ttl`` requested at ``start``."""
        self.granted_at = start
        if ttl is None:
            self._deadline = None
        else:
            self.ttl = ttl
            self._deadline = lease_deadline(start, ttl, self._drift)

    def _cancel_renewal(self) -> None:
        cancel, self._renewal = self._renewal, None
        if cancel is not None:
            cancel()

    def _begin_release(self) -> bool:
        """Common start of release: ``False`` if already released (a no-op)."""
        return not self._released

    def _finish_release(self) -> None:
        with self._guard:
            self._released = True
        self._cancel_renewal()

    def _check_extendable(self) -> None:
        if self._released:
            raise LockNotOwned(f"lock {self.name!r} (token {self.token}) was released")
        if self.lost:
            raise LockLost(f"lock {self.name!r} (token {self.token}) lost: {self._lost_reason}")

    def _lost_error(self) -> LockLost:
        return LockLost(f"lock {self.name!r} (token {self.token}) lost: {self._lost_reason}")

    def __repr__(self) -> str:
        if self._released:
            status = "released"
        elif self.lost:
            status = "lost"
        else:
            status = "held"
        return f"{type(self).__name__}(name={self.name!r}, token={self.token}, {status})"


class Lease(LeaseBase):
    """A held lock: its fencing token, its local deadline, and release/extend.

    Use it as a context manager (``with lock.acquire() as lease:``) to release on exit.
    Releasing twice is a no-op; releasing or extending a lost lease raises
    :class:`~dsprims.LockLost` (after a best-effort release in the store, so a lease that
    expired only locally frees the lock for the next holder at once).
    """

    __slots__ = ("_driver",)

    def __init__(
        self,
        name: str,
        token: int,
        *,
        owner: str,
        driver: LeaseDriver,
        clock: Clock,
        ttl: float | None,
        start: float | None = None,
        clock_drift: float = 0.01,
        on_lost: OnLost | None = None,
    ) -> None:
        super().__init__(
            name,
            token,
            owner=owner,
            clock=clock,
            ttl=ttl,
            start=start,
            clock_drift=clock_drift,
            on_lost=on_lost,
        )
        self._driver = driver

    def release(self) -> None:
        """Give the lock back.

        A second call is a no-op.

        Raises:
            LockLost: the lease was lost before the release (the critical section ran
                unprotected for a while: treat its effects as suspect).
            BackendUnavailable: the store could not be reached; the lease stays held until
                it expires, and ``release()`` may be called again.
        """
        if not self._begin_release():
            return
        if self.lost:
            self._cancel_renewal()
            # Best effort only: the loss is what gets reported.
            with contextlib.suppress(Exception):
                self._driver.release_lease(self)
            raise self._lost_error()
        try:
            self._driver.release_lease(self)
        except LockLost as exc:
            self._mark_lost(str(exc))
            raise
        self._finish_release()

    def extend(self, ttl: float | None = None) -> None:
        """Extend the lease to ``ttl`` seconds from now (default: the lock's ``ttl``).

        Raises:
            LockLost: the lease is lost (it is never re-created in the store).
            LockNotOwned: the lease was released.
            ConfigurationError: ``ttl`` is not a finite number > 0.
        """
        request = None if ttl is None else check_ttl(ttl)
        self._check_extendable()
        start = self._clock.monotonic()
        try:
            granted = self._driver.extend_lease(self, request)
        except LockLost as exc:
            self._mark_lost(str(exc))
            raise
        if self.lost:
            raise self._lost_error()
        self._set_ttl(start, granted)

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.release()
            return
        # Never mask the body's own exception with a release problem.
        try:
            self.release()
        except Exception:
            logger.debug("release of lock %r after an error failed", self.name, exc_info=True)


class AsyncLease(LeaseBase):
    """The asyncio twin of :class:`Lease`: ``release`` and ``extend`` are coroutines.

    ``lost``, ``check()`` and ``token`` are plain (no I/O). Use ``async with``.
    """

    __slots__ = ("_driver",)

    def __init__(
        self,
        name: str,
        token: int,
        *,
        owner: str,
        driver: AsyncLeaseDriver,
        clock: Clock,
        ttl: float | None,
        start: float | None = None,
        clock_drift: float = 0.01,
        on_lost: OnLost | None = None,
    ) -> None:
        super().__init__(
            name,
            token,
            owner=owner,
            clock=clock,
            ttl=ttl,
            start=start,
            clock_drift=clock_drift,
            on_lost=on_lost,
        )
        self._driver = driver

    async def release(self) -> None:
        """See :meth:`Lease.release`."""
        if not self._begin_release():
            return
        if self.lost:
            self._cancel_renewal()
            with contextlib.suppress(Exception):
                await self._driver.release_lease(self)
            raise self._lost_error()
        try:
            await self._driver.release_lease(self)
        except LockLost as exc:
            self._mark_lost(str(exc))
            raise
        self._finish_release()

    async def extend(self, ttl: float | None = None) -> None:
        """See :meth:`Lease.extend`."""
        request = None if ttl is None else check_ttl(ttl)
        self._check_extendable()
        start = self._clock.monotonic()
        try:
            granted = await self._driver.extend_lease(self, request)
        except LockLost as exc:
            self._mark_lost(str(exc))
            raise
        if self.lost:
            raise self._lost_error()
        self._set_ttl(start, granted)

    async def __aenter__(self) -> AsyncLease:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.release()
            return
        try:
            await self.release()
        except Exception:
            logger.debug("release of lock %r after an error failed", self.name, exc_info=True)
