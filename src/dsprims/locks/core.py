"""The pure core of dsprims locks: parameters, the lock state machine, fencing and schedules.

Everything here is a pure function of ``(state, now, request, params)`` returning
``(decision, new_state)`` over frozen dataclasses; nothing imports time, threads, asyncio or a
driver. The in-memory backend runs these functions under its lock, and the Redis scripts
(``dsprims/backends/lua/lock_*.lua``) port them line for line; a differential test pins the two
to the same decisions.

The lock state machine (one state per lock name)::

    LockState(owner, token, deadline, fence, queue)

* ``owner``/``token``/``deadline``: the current holder, its fencing token and the instant (µs on
  the deciding clock) when its lease ends. A holder whose deadline has passed is gone.
* ``fence``: the highest fencing token ever issued for this name. A grant issues
  ``max(fence + 1, wall_us)`` (mode ``"clock"``) or ``fence + 1`` (mode ``"counter"``). The
  wall-clock floor is what keeps tokens increasing after a store that keeps nothing on disk
  restarts and forgets ``fence``: provided its clock did not step back across the restart by
  more than the restart took, the first token after it is larger than every token before it.
* ``queue``: waiters in arrival order (``(arrived, ticket)``), each with an expiry that the
  waiter refreshes while it waits, so a crashed waiter leaves the queue by itself. A waiter that
  queued in fair mode also leaves its grant settings (owner secret, lease length, token mode),
  so that the lock can be handed to it directly.

Fairness (Lamport's bakery idea reduced to a FIFO ticket queue): with ``fair=True`` a free lock
goes only to the head of the queue (or to anyone when the queue is empty); with ``fair=False``
any requester may barge in. A decision that frees the lock names the waiter to *wake*: the
shells deliver that wake-up (a list push on Redis, an event in memory), so waiters block
instead of polling.

Direct hand-off (fair mode): a release (or a waiter giving up while the lock is free) that
finds a live head which queued in fair mode *grants the lock to that head itself* — owner,
the next fencing token, a lease from now — and the wake-up carries the token and the lease
length (:class:`Handoff`), so the head holds the lock the moment it is woken, without asking
again (two message hops from release to holder instead of four). The handed lease is the
head's own ``ttl``, cut to what is left of its queue entry's lifetime: a waiter that died in
the queue (its entry not yet expired) then holds the lock no longer than its entry would have
blocked the queue anyway, instead of a whole ``ttl``. The head's lease started after its last
attempt reached the store, so the moment just before that attempt was sent is a safe local
lease start (see :func:`refresh_after_handoff` for when the new holder extends it at once). A
head that queued with ``fair=False`` (and every Redlock contender) is only woken, and asks
again.

Fencing (Kleppmann, "How to do distributed locking", 2016): the resource accepts a write only
if its token is at least the highest it has accepted (:func:`fence_decision`), so a holder that
paused past its lease and woke up believing it still holds the lock cannot overwrite the work
of the next holder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final, Literal

from dsprims.errors import ConfigurationError

__all__ = [
    "CLOCK_DRIFT_FLOOR",
    "DEFAULT_TTL",
    "FENCE_TTL",
    "AcquireDecision",
    "AcquireRequest",
    "ExtendDecision",
    "FenceDecision",
    "FencingMode",
    "Handoff",
    "LeaveDecision",
    "LockParams",
    "LockState",
    "ReleaseDecision",
    "RenewalPlan",
    "Waiter",
    "check_timeout",
    "check_token",
    "check_ttl",
    "decide_acquire",
    "decide_extend",
    "decide_leave",
    "decide_release",
    "fence_decision",
    "lease_deadline",
    "next_token",
    "plan_renewal",
    "plan_wait",
    "quorum_outcome",
    "refresh_after_handoff",
    "waiter_ttl_us",
]

#: Default lease length in seconds.
DEFAULT_TTL: Final = 10.0
#: Seconds the fencing counter of an idle lock name is kept (refreshed by every grant). After
#: that the wall-clock floor alone keeps tokens increasing.
FENCE_TTL: Final = 86_400.0
#: Seconds subtracted from every local lease deadline on top of ``ttl * clock_drift``: the
#: Redlock paper's allowance for clock-rate differences and timer granularity.
CLOCK_DRIFT_FLOOR: Final = 0.002
#: Seconds a waiter adds to the holder's remaining lease before it looks again (so it retries
#: just after the expiry, not just before).
EXPIRY_MARGIN: Final = 0.001
#: Longest lease accepted (a year): keeps deadlines in µs since the epoch below 2**53, so the
#: Lua scripts (double-precision numbers) compute them exactly.
MAX_TTL: Final = 365 * 86_400.0
#: Largest token accepted anywhere: a signed 64-bit integer, so tokens fit SQL ``BIGINT``.
MAX_TOKEN: Final = 2**63 - 1

FencingMode = Literal["clock", "counter"]


# -- validation ---------------------------------------------------------------------------------


def _number(value: object, param: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{param} must be a number, got {type(value).__name__}")
    if math.isnan(value):
        raise ConfigurationError(f"{param} must not be NaN")
    return float(value)


def check_ttl(value: object, param: str = "ttl") -> float:
    """A lease length: a finite number of seconds > 0."""
    ttl = _number(value, param)
    if not math.isfinite(ttl) or ttl <= 0:
        raise ConfigurationError(f"{param} must be a finite number of seconds > 0, got {value!r}")
    if ttl > MAX_TTL:
        raise ConfigurationError(f"{param} must be at most a year ({MAX_TTL:.0f} s), got {value!r}")
    return ttl


def check_timeout(value: object, param: str = "timeout") -> float | None:
    """A wait limit: ``None`` (wait forever) or a number of seconds >= 0 (``inf`` is None)."""
    if value is None:
        return None
    timeout = _number(value, param)
    if timeout < 0:
        raise ConfigurationError(f"{param} must be >= 0 or None, got {value!r}")
    return None if math.isinf(timeout) else timeout


def check_token(value: object, param: str = "token") -> int:
    """A fencing token: an ``int`` in ``[0, 2**63 - 1]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{param} must be an int, got {type(value).__name__}")
    if not 0 <= value <= MAX_TOKEN:
        raise ConfigurationError(f"{param} must be in [0, 2**63 - 1], got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class LockParams:
    """Validated settings shared by every lock class.

    Attributes:
        ttl: lease length in seconds (finite, > 0).
        auto_renew: renew held leases in the background until released.
        renew_fraction: renew when this fraction of the lease has elapsed (0 < f < 1).
        max_hold: stop renewing this many seconds after the grant (``None``: no limit).
        fair: serve waiters first come, first served; ``False`` lets newcomers barge in.
        clock_drift: fraction of ``ttl`` the local deadline is shortened by, to allow for the
            client's and the server's clocks running at different rates (0 <= d < 0.5).
        fencing: ``"clock"`` floors tokens by the server's wall clock (survives a restart of a
            store that keeps nothing on disk); ``"counter"`` is a plain counter, for stores that
            persist every write (AOF ``appendfsync always``, ``WAIT``).
    """

    ttl: float = DEFAULT_TTL
    auto_renew: bool = True
    renew_fraction: float = 1 / 3
    max_hold: float | None = None
    fair: bool = True
    clock_drift: float = 0.01
    fencing: FencingMode = "clock"

    def __post_init__(self) -> None:
        object.__setattr__(self, "ttl", check_ttl(self.ttl))
        if not isinstance(self.auto_renew, bool):
            raise TypeError(f"auto_renew must be a bool, got {type(self.auto_renew).__name__}")
        if not isinstance(self.fair, bool):
            raise TypeError(f"fair must be a bool, got {type(self.fair).__name__}")
        fraction = _number(self.renew_fraction, "renew_fraction")
        if not 0 < fraction < 1:
            raise ConfigurationError(f"renew_fraction must be in (0, 1), got {fraction!r}")
        object.__setattr__(self, "renew_fraction", fraction)
        if self.max_hold is not None:
            object.__setattr__(self, "max_hold", check_ttl(self.max_hold, "max_hold"))
        drift = _number(self.clock_drift, "clock_drift")
        if not 0 <= drift < 0.5:
            raise ConfigurationError(f"clock_drift must be in [0, 0.5), got {drift!r}")
        object.__setattr__(self, "clock_drift", drift)
        if self.fencing not in ("clock", "counter"):
            raise ConfigurationError(f"fencing must be 'clock' or 'counter', got {self.fencing!r}")

    @property
    def ttl_us(self) -> int:
        """``ttl`` in whole microseconds (at least 1), the unit of the state machine."""
        return max(1, round(self.ttl * 1e6))


def lease_deadline(start: float, ttl: float, clock_drift: float) -> float:
    """The local instant a lease must be considered lost.

    ``start`` is the local monotonic time just *before* the request that granted or extended
    the lease was sent, so the server's own expiry can only be later; the lease is shortened
    by ``ttl * clock_drift + CLOCK_DRIFT_FLOOR`` for clock-rate differences (Redlock, section
    "Is the algorithm asynchronous?").
    """
    return start + ttl - ttl * clock_drift - CLOCK_DRIFT_FLOOR


# -- fencing ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FenceDecision:
    """The resource side of fencing: whether a write with a token is accepted.

    Attributes:
        accepted: the token is at least the highest accepted so far.
        highest: the highest token accepted after this decision.
    """

    accepted: bool
    highest: int


def fence_decision(highest: int | None, token: int) -> FenceDecision:
    """Accept ``token`` unless a higher one was accepted before (equal tokens are accepted).

    Equal tokens pass so that one holder may write several times under one lease; a lower one
    means a newer holder has written since, and the write is stale.
    """
    if highest is not None and token < highest:
        return FenceDecision(False, highest)
    return FenceDecision(True, token)


def next_token(fence: int, wall_us: int, mode: FencingMode = "clock") -> int:
    """The token for the next grant after ``fence``: see the module docstring."""
    if mode == "counter":
        return fence + 1
    return max(fence + 1, wall_us)


# -- the lock state machine ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Waiter:
    """One queued waiter; ordered by ``(arrived, ticket)`` like the Redis sorted set.

    ``owner``, ``ttl_us`` and ``fencing`` are the settings of the waiter's grant, kept when it
    queued in fair mode so that a release can hand the lock to it directly; ``owner == ""``
    means "wake it up only".
    """

    arrived: int
    ticket: str
    expires: int
    owner: str = field(default="", compare=False)
    ttl_us: int = field(default=0, compare=False)
    fencing: FencingMode = field(default="clock", compare=False)


@dataclass(frozen=True, slots=True)
class LockState:
    """Everything the store keeps for one lock name (times in µs on the deciding clock)."""

    owner: str | None = None
    token: int = 0
    deadline: int = 0
    fence: int = 0
    queue: tuple[Waiter, ...] = ()


@dataclass(frozen=True, slots=True)
class AcquireRequest:
    """One acquisition attempt.

    Attributes:
        owner: the requester's secret owner token (unique per ``acquire`` call).
        ticket: its waiter ticket, or ``""`` for an attempt that must not queue.
        ttl_us: the lease length in µs.
        fair: whether a free lock goes only to the head of the queue.
        waiter_ttl_us: how long the queue entry survives without a refresh.
        fencing: the token mode.
    """

    owner: str
    ticket: str
    ttl_us: int
    fair: bool = True
    waiter_ttl_us: int = 5_000_000
    fencing: FencingMode = "clock"


@dataclass(frozen=True, slots=True)
class AcquireDecision:
    """The outcome of :func:`decide_acquire`.

    Attributes:
        granted: the requester holds the lock now.
        token: its fencing token (0 when not granted).
        wait_us: when not granted, µs until the current lease ends, or -1 when the lock is
            free but promised to an earlier waiter (wait for a wake-up).
        wake: the ticket of a waiter to wake, if any.
    """

    granted: bool
    token: int = 0
    wait_us: int = -1
    wake: str | None = None


@dataclass(frozen=True, slots=True)
class Handoff:
    """A lock handed to a waiter by a release: what its wake-up carries.

    Attributes:
        token: the fencing token of the grant.
        lease_us: the lease granted, in µs from the moment of the hand-off.
    """

    token: int
    lease_us: int


@dataclass(frozen=True, slots=True)
class ReleaseDecision:
    """The outcome of :func:`decide_release`.

    Attributes:
        released: the caller held the lock and released it.
        wake: the ticket of a waiter to wake, if any.
        handoff: the grant handed to ``wake`` (its wake-up must carry it), or ``None`` for a
            plain wake-up.
    """

    released: bool
    wake: str | None = None
    handoff: Handoff | None = None


@dataclass(frozen=True, slots=True)
class ExtendDecision:
    """The outcome of :func:`decide_extend`."""

    extended: bool


@dataclass(frozen=True, slots=True)
class LeaveDecision:
    """The outcome of :func:`decide_leave`: the waiter to wake, if any, and the grant it was
    handed (``None`` for a plain wake-up; see :class:`ReleaseDecision`)."""

    wake: str | None = None
    handoff: Handoff | None = None


def _live(state: LockState | None, now: int) -> LockState:
    """Drop an expired holder and expired waiters (what Redis key expiry does)."""
    if state is None:
        return LockState()
    if state.owner is not None and state.deadline <= now:
        state = LockState(None, 0, 0, state.fence, state.queue)
    if any(w.expires <= now for w in state.queue):
        live = tuple(w for w in state.queue if w.expires > now)
        state = LockState(state.owner, state.token, state.deadline, state.fence, live)
    return state


def _head(state: LockState) -> str | None:
    return state.queue[0].ticket if state.queue else None


def _free(
    state: LockState, now: int, wall_us: int, handoff: bool
) -> tuple[str | None, Handoff | None, LockState]:
    """The lock is free: wake the head of the queue, or (``handoff``, and the head queued in
    fair mode) grant the lock to it. Returns (ticket to wake, what it was handed, state)."""
    if not state.queue:
        return None, None, state
    head = state.queue[0]
    if not handoff or not head.owner:
        return head.ticket, None, state
    token = next_token(state.fence, wall_us, head.fencing)
    # Never longer than the head's entry would still live (it is live: expires > now).
    lease = min(head.ttl_us, head.expires - now)
    granted = LockState(head.owner, token, now + lease, token, state.queue[1:])
    return head.ticket, Handoff(token, lease), granted


def decide_acquire(
    state: LockState | None, now: int, wall_us: int, request: AcquireRequest
) -> tuple[AcquireDecision, LockState]:
    """Grant the lock, or queue the requester (when it has a ticket) and say how long to wait.

    Args:
        state: the stored state (``None`` when nothing is stored).
        now: the deciding clock in µs (deadlines are on this clock).
        wall_us: wall-clock µs since the epoch, the floor of ``"clock"`` tokens.
        request: the attempt.
    """
    st = _live(state, now)
    if st.owner == request.owner:
        # The same acquire call asking again (its earlier reply was lost): idempotent.
        st = LockState(st.owner, st.token, now + request.ttl_us, st.fence, st.queue)
        return AcquireDecision(True, st.token, 0, None), st
    head = _head(st)
    if st.owner is None and (not request.fair or head is None or head == request.ticket):
        token = next_token(st.fence, wall_us, request.fencing)
        queue = tuple(w for w in st.queue if w.ticket != request.ticket)
        new = LockState(request.owner, token, now + request.ttl_us, token, queue)
        return AcquireDecision(True, token, 0, None), new
    queue = st.queue
    if request.ticket:
        mine = next((w for w in queue if w.ticket == request.ticket), None)
        arrived = now if mine is None else mine.arrived
        others = tuple(w for w in queue if w.ticket != request.ticket)
        expires = now + request.waiter_ttl_us
        if request.fair:
            # Its grant settings, for a direct hand-off.
            entry = Waiter(
                arrived, request.ticket, expires, request.owner, request.ttl_us, request.fencing
            )
        else:
            entry = Waiter(arrived, request.ticket, expires)
        queue = tuple(sorted((*others, entry)))
        st = LockState(st.owner, st.token, st.deadline, st.fence, queue)
    if st.owner is None:
        # Free but promised to the head: make sure the head knows.
        return AcquireDecision(False, 0, -1, head), st
    return AcquireDecision(False, 0, st.deadline - now, None), st


def decide_release(
    state: LockState | None, now: int, owner: str, *, handoff: bool = False, wall_us: int = 0
) -> tuple[ReleaseDecision, LockState]:
    """Release the lock if ``owner`` holds it (and its lease has not ended); wake the head.

    Args:
        state: the stored state.
        now: the deciding clock in µs.
        owner: the releasing owner secret.
        handoff: grant the lock directly to the head when it queued in fair mode (see the
            module docstring); ``False`` only wakes it.
        wall_us: wall-clock µs since the epoch (the floor of a handed-over ``"clock"`` token).
    """
    st = _live(state, now)
    if st.owner is None or st.owner != owner:
        return ReleaseDecision(False, None), st
    wake, handed, st = _free(LockState(None, 0, 0, st.fence, st.queue), now, wall_us, handoff)
    return ReleaseDecision(True, wake, handed), st


def decide_extend(
    state: LockState | None, now: int, owner: str, ttl_us: int
) -> tuple[ExtendDecision, LockState]:
    """Extend the lease to ``now + ttl_us`` if ``owner`` still holds it; never re-create it."""
    st = _live(state, now)
    if st.owner is None or st.owner != owner:
        return ExtendDecision(False), st
    return ExtendDecision(True), LockState(st.owner, st.token, now + ttl_us, st.fence, st.queue)


def decide_leave(
    state: LockState | None,
    now: int,
    ticket: str,
    owner: str = "",
    *,
    handoff: bool = False,
    wall_us: int = 0,
) -> tuple[LeaveDecision, LockState]:
    """Remove a waiter that gives up, and release a grant to ``owner`` that raced with it
    (e.g. a hand-off that reached a waiter as it timed out or was cancelled).

    If the lock ends up free, the new head of the queue is woken, or with ``handoff`` handed
    the lock as in :func:`decide_release`, so a grant never stays with a waiter that left.
    """
    st = _live(state, now)
    if owner and st.owner == owner:
        st = LockState(None, 0, 0, st.fence, st.queue)
    if ticket:
        rest = tuple(w for w in st.queue if w.ticket != ticket)
        st = LockState(st.owner, st.token, st.deadline, st.fence, rest)
    if st.owner is not None:
        return LeaveDecision(None), st
    wake, handed, st = _free(st, now, wall_us, handoff)
    return LeaveDecision(wake, handed), st


# -- Redlock quorum ----------------------------------------------------------------------------


def quorum_outcome(
    decisions: list[AcquireDecision | None],
    elapsed: float,
    ttl: float,
    clock_drift: float,
) -> AcquireDecision:
    """Combine the per-server decisions of one Redlock round (Sanfilippo, "Distributed locks
    with Redis", redis.io).

    Granted when a majority granted and the lease is still valid after the round:
    ``elapsed < ttl - (ttl * clock_drift + CLOCK_DRIFT_FLOOR)``. The token is the largest
    token of the granting servers (see the Redlock section of ``docs/locks.md`` for what that
    guarantees). When not granted, ``wait_us`` is when a majority could be free again: the
    majority-th smallest of the servers' remaining leases (0 for a granting server, unknown
    servers count as never).

    Args:
        decisions: one per server; ``None`` for a server that failed or timed out.
        elapsed: seconds the round took on the client's monotonic clock.
        ttl: the requested lease length in seconds.
        clock_drift: the lock's drift fraction.
    """
    quorum = len(decisions) // 2 + 1
    granted = [d for d in decisions if d is not None and d.granted]
    valid = elapsed < lease_deadline(0.0, ttl, clock_drift)
    if len(granted) >= quorum and valid:
        return AcquireDecision(True, max(d.token for d in granted), 0, None)
    never = 2**62
    waits = sorted(
        never if d is None else (0 if d.granted else max(d.wait_us, 0)) for d in decisions
    )
    wait = waits[quorum - 1]
    return AcquireDecision(False, 0, -1 if wait >= never else wait, None)


# -- schedules ----------------------------------------------------------------------------------


def waiter_ttl_us(wait_slice: float) -> int:
    """How long (µs) a queue entry lives without a refresh: two missed refreshes plus 1 s.

    Waiters refresh their entry at least every ``wait_slice``; an entry that outlives this
    belongs to a crashed or stopped waiter, and is dropped so it stops holding up the queue.
    """
    return round((2 * wait_slice + 1.0) * 1e6)


def refresh_after_handoff(
    start: float, now: float, lease: float, params: LockParams, renewing: bool
) -> bool:
    """Whether a lease handed over by the previous holder must be extended at once.

    The waiter does not know when the hand-off happened, only that it came after its last
    attempt reached the store, so its local lease of ``lease`` seconds counts from ``start``,
    the moment just before that attempt was sent (never later than the grant: the local
    deadline never overstates the store's). It extends at once (one more round trip) when

    * less than half of the handed lease is left locally (it blocked or paused long), or
    * the handed lease is shorter than ``params.ttl`` (cut to its queue entry's lifetime) and
      nothing will renew it (``renewing`` false: no watchdog), since the caller was promised
      a lease of ``ttl``. With the watchdog, the first renewal (after ``renew_fraction`` of the
      handed lease) brings it up to ``ttl`` instead, off the critical path.
    """
    if lease_deadline(start, lease, params.clock_drift) - now < lease / 2:
        return True
    return not renewing and lease < params.ttl


def plan_wait(wait_us: int, now: float, deadline: float | None, wait_slice: float) -> float | None:
    """How long a waiter blocks before its next attempt, or ``None`` to give up.

    Args:
        wait_us: the decision's ``wait_us`` (remaining lease, or -1 for "wait to be woken").
        now: the waiter's monotonic clock, seconds.
        deadline: when the caller's ``timeout`` ends (``None``: never).
        wait_slice: the longest single block (below the client's socket timeout); the waiter
            refreshes its queue entry at least this often.
    """
    if deadline is not None and now >= deadline:
        return None
    wait = wait_slice
    if wait_us >= 0:
        # A holder that crashed is noticed right after its lease ends.
        wait = min(wait, wait_us / 1e6 + EXPIRY_MARGIN)
    if deadline is not None:
        wait = min(wait, deadline - now)
    return max(wait, EXPIRY_MARGIN)


@dataclass(frozen=True, slots=True)
class RenewalPlan:
    """When the watchdog renews a lease next, and for how long.

    Attributes:
        at: monotonic time of the renewal.
        ttl: seconds to request then.
    """

    at: float
    ttl: float


def plan_renewal(
    granted_at: float, acquired_at: float, params: LockParams, ttl: float | None = None
) -> RenewalPlan | None:
    """The next renewal of a lease last granted at ``granted_at``, or ``None`` to stop.

    Renewal happens after ``renew_fraction`` of the lease; with ``max_hold`` it never extends
    the lease past ``acquired_at + max_hold`` and stops once that limit is reached.
    """
    lease = params.ttl if ttl is None else ttl
    at = granted_at + lease * params.renew_fraction
    request = params.ttl
    if params.max_hold is not None:
        limit = acquired_at + params.max_hold
        # Renewing later than the current lease allows would be too late; stop before that.
        if at >= limit or limit - at <= CLOCK_DRIFT_FLOOR:
            return None
        request = min(request, limit - at)
    return RenewalPlan(at, request)
