"""Pure decision cores of the rate limiters: GCRA, exact sliding log, sliding-window counter.

Every function here is a pure function of ``(state, now, request, params)`` returning
``(verdict, new_state)``. Nothing here reads a clock, takes a lock or talks to a store: the
in-memory backend runs these functions under its lock and ``ratelimit_decide.lua`` ports them line
by line, and the golden vectors in ``tests/ratelimit/vectors.py`` pin both to the same answers.

Units. Time is an integer number of **microseconds** and costs are integers. Integers keep the
two implementations bit-identical (Lua numbers are IEEE doubles, exact up to 2**53; µs since the
epoch are about 2**51) and make the exactness contract hold: a request denied with
``retry_after_us = r`` at ``now`` is admitted at ``now + r``, with no floating-point slack.
Parameters are validated so that every intermediate product stays below 2**53.

A verdict is the tuple ``(allowed, remaining, retry_after_us, reset_after_us)``, the same four
integers the Lua script returns (``allowed`` is 0 or 1 there).

Algorithms:

* **GCRA** (Generic Cell Rate Algorithm, ITU-T I.371 / ATM Forum TM 4.1, the "virtual scheduling"
  form): a token bucket of ``capacity`` tokens refilled at ``rate`` per second, stored as one
  number, the theoretical arrival time ``tat``. A request of cost ``n`` at ``now`` is admitted iff
  ``max(tat, now) + n*T - tau <= now`` where ``T`` is the emission interval and
  ``tau = capacity*T`` the burst tolerance; admission sets ``tat = max(tat, now) + n*T``. This is
  exactly a token bucket whose level is ``(now + tau - tat) / T``.
* **Sliding log** (exact): every admission ``(t, cost)`` counts during ``[t, t + window)``; a
  request is admitted iff the live total plus its cost is at most ``limit``. That implies at most
  ``limit`` admitted in *any* window of length ``window``. Entries expire from the front of the
  log, so a decision costs O(1) amortised plus O(cost) to compute ``retry_after`` of a denial,
  whatever the number of live entries.
* **Sliding-window counter** (the two-bucket approximation popularised by Cloudflare, "How we
  built rate limiting capable of scaling to millions of domains", 2017): counts per fixed window;
  the estimate is ``prev * (window - elapsed) / window + cur``. It can admit up to twice ``limit``
  in a window that straddles a boundary when the previous window's traffic was bunched at its end,
  and it never admits more than ``limit`` within one fixed window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from dsprims.errors import ConfigurationError

__all__ = [
    "MAX_EXACT",
    "US_PER_SECOND",
    "CounterParams",
    "CounterState",
    "LogParams",
    "LogUpdate",
    "TokenBucketParams",
    "Verdict",
    "CounterTuple",
    "check_cost",
    "counter_decide",
    "counter_step",
    "gcra_decide",
    "gcra_reserve",
    "log_decide",
    "log_step",
    "seconds_to_us",
]

US_PER_SECOND: Final = 1_000_000
#: Largest integer every intermediate value must stay below (exact in an IEEE double).
MAX_EXACT: Final = 2**53

#: ``(allowed, remaining, retry_after_us, reset_after_us)``.
Verdict = tuple[bool, int, int, int]


def _finite_positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ConfigurationError(f"{name} must be finite, got {value!r}")
    if value <= 0:
        raise ConfigurationError(f"{name} must be > 0, got {value!r}")
    return float(value)


def _whole(name: str, value: object, minimum: int) -> int:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float):
            raise ConfigurationError(f"{name} must be a whole number, got {value!r}")
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ConfigurationError(f"{name} must be >= {minimum}, got {value!r}")
    return value


def seconds_to_us(name: str, seconds: object) -> int:
    """A positive duration in float seconds as whole microseconds (at least 1)."""
    value = _finite_positive(name, seconds)
    us = round(value * US_PER_SECOND)
    if us < 1:
        raise ConfigurationError(f"{name} must be at least 1 microsecond, got {seconds!r}")
    return us


def check_cost(cost: object, limit: int) -> int:
    """Validate a request's cost: a whole number in ``[0, limit]``.

    Raises:
        TypeError: ``cost`` is not an int.
        ConfigurationError: ``cost`` is negative, or above ``limit`` (it could never be admitted).
    """
    if cost.__class__ is int and 0 <= cost <= limit:
        return cost
    if isinstance(cost, bool) or not isinstance(cost, int):
        raise TypeError(f"cost must be an int, got {type(cost).__name__}")
    if cost < 0:
        raise ConfigurationError(f"cost must be >= 0, got {cost}")
    if cost > limit:
        raise ConfigurationError(
            f"cost {cost} exceeds the limit {limit}: such a request can never be admitted"
        )
    return int(cost)


# --------------------------------------------------------------------------------------------
# GCRA (token bucket)


@dataclass(frozen=True, slots=True)
class TokenBucketParams:
    """A validated token bucket: ``rate`` tokens per second, ``capacity`` tokens of burst.

    Attributes:
        rate: tokens per second (as given).
        capacity: the burst size, a whole number >= 1.
        interval_us: the emission interval ``T`` in µs: ``1e6 / rate`` rounded up to a whole
            microsecond, so the effective rate never exceeds ``rate`` (it is lower by less than
            one part in ``T``; exact whenever ``1e6 / rate`` is whole).
        tolerance_us: the burst tolerance ``tau = capacity * T``.
    """

    rate: float
    capacity: int
    interval_us: int = field(init=False)
    tolerance_us: int = field(init=False)

    def __post_init__(self) -> None:
        rate = _finite_positive("rate", self.rate)
        capacity = _whole("capacity", self.capacity, 1)
        exact = US_PER_SECOND / rate
        if exact * capacity >= MAX_EXACT // 4:  # also catches 1e6 / 5e-324 == inf
            raise ConfigurationError(
                f"capacity / rate is too long ({capacity} tokens at {rate!r}/s): "
                f"the bucket must refill within about 70 years"
            )
        nearest = round(exact)
        # 1e6 / (1e6 / 86400) is 86400.00000000001 in floats: snap such dust to the whole value.
        interval = nearest if abs(exact - nearest) <= 1e-9 * exact else math.ceil(exact)
        if interval < 1 or exact < 1 - 1e-9:
            raise ConfigurationError(
                f"rate must be at most {US_PER_SECOND} per second (one token per microsecond), "
                f"got {rate!r}; scale the cost unit instead"
            )
        if interval * capacity >= MAX_EXACT // 4:
            raise ConfigurationError(
                f"capacity / rate is too long ({capacity} tokens at {rate!r}/s): "
                f"the bucket must refill within about 70 years"
            )
        object.__setattr__(self, "rate", rate)
        object.__setattr__(self, "capacity", capacity)
        object.__setattr__(self, "interval_us", interval)
        object.__setattr__(self, "tolerance_us", interval * capacity)


def gcra_decide(
    interval_us: int, tolerance_us: int, tat: int, now: int, cost: int, consume: bool
) -> tuple[bool, int, int, int, int]:
    """One GCRA decision.

    Args:
        interval_us: the emission interval ``T``.
        tolerance_us: the burst tolerance ``tau = capacity * T``.
        tat: the stored theoretical arrival time (``now`` or less for a full or new bucket).
        now: the current time in µs.
        cost: tokens requested (``0 <= cost <= capacity``).
        consume: store the admission (``False`` for a peek).

    Returns:
        ``(allowed, remaining, retry_after_us, reset_after_us, new_tat)``. ``reset_after_us`` is
        the time until the bucket is full again; the state may be dropped once ``now >= new_tat``
        because a bucket that is full reads the same as a new one.
    """
    base = tat if tat > now else now
    new_tat = base + cost * interval_us
    allow_at = new_tat - tolerance_us
    if allow_at <= now:
        if not consume:
            new_tat = base
        return True, (now + tolerance_us - new_tat) // interval_us, 0, new_tat - now, new_tat
    # Reservations (gcra_reserve) may push tat past now + tau: no tokens, not fewer than none.
    remaining = (now + tolerance_us - base) // interval_us
    return False, remaining if remaining > 0 else 0, allow_at - now, base - now, base


def gcra_reserve(
    interval_us: int, tolerance_us: int, tat: int, now: int, cost: int, max_wait_us: int
) -> tuple[bool, int, int, int, int]:
    """Reserve ``cost`` tokens at the earliest instant they are available, if that is soon enough.

    The blocking ``acquire`` of a token bucket: instead of waiting and asking again (and losing
    any oversleep, which a bucket cannot bank beyond its capacity), it books the admission
    instant now and then waits for it, so waiters keep the exact schedule and are served in
    arrival order.

    Args:
        interval_us: the emission interval ``T``.
        tolerance_us: the burst tolerance ``tau``.
        tat: the stored theoretical arrival time.
        now: the current time in µs.
        cost: tokens requested.
        max_wait_us: the longest acceptable wait; longer waits reserve nothing.

    Returns:
        ``(reserved, remaining, wait_us, reset_after_us, new_tat)``: ``wait_us`` is the time
        until the reserved admission (0 when admitted at once), or, when nothing was reserved,
        the wait that would have been needed.
    """
    base = tat if tat > now else now
    new_tat = base + cost * interval_us
    wait = new_tat - tolerance_us - now
    if wait < 0:
        wait = 0
    if wait <= max_wait_us:
        remaining = (now + tolerance_us - new_tat) // interval_us
        return True, remaining if remaining > 0 else 0, wait, new_tat - now, new_tat
    remaining = (now + tolerance_us - base) // interval_us
    return False, remaining if remaining > 0 else 0, wait, base - now, base


# --------------------------------------------------------------------------------------------
# Sliding-window counter


@dataclass(frozen=True, slots=True)
class CounterParams:
    """A validated sliding-window counter: at most about ``limit`` per ``window`` seconds.

    Attributes:
        limit: the count admitted per window, a whole number >= 1.
        window: the window in seconds (as given).
        tick_us: the time resolution of the weighting, 1 µs, or 1 ms when ``limit * window`` in
            µs would leave the exact integer range (e.g. a million per day).
        window_ticks: the window in ticks.
    """

    limit: int
    window: float
    tick_us: int = field(init=False)
    window_ticks: int = field(init=False)

    def __post_init__(self) -> None:
        limit = _whole("limit", self.limit, 1)
        window_us = seconds_to_us("window", self.window)
        tick = 1
        if 2 * limit * window_us >= MAX_EXACT:
            tick = 1000
            window_us = max(1, round(window_us / tick)) * tick
            if 2 * limit * (window_us // tick) >= MAX_EXACT:
                raise ConfigurationError(
                    f"limit * window is too large ({limit} per {self.window!r} s)"
                )
        object.__setattr__(self, "limit", limit)
        object.__setattr__(self, "window", float(self.window))
        object.__setattr__(self, "tick_us", tick)
        object.__setattr__(self, "window_ticks", window_us // tick)


@dataclass(frozen=True, slots=True)
class CounterState:
    """The two buckets: ``index`` of the current fixed window, and the two counts."""

    index: int
    previous: int
    current: int


#: The counts of a sliding-window counter as plain integers: ``(index, previous, current)``.
CounterTuple = tuple[int, int, int]


def counter_decide(
    params: CounterParams, state: CounterState | None, now: int, cost: int, consume: bool
) -> tuple[Verdict, CounterState | None]:
    """One sliding-window-counter decision (:func:`counter_step` with a dataclass state).

    Returns:
        ``(verdict, new_state)``; ``new_state`` is ``None`` when nothing is counted any more.
    """
    allowed, remaining, retry, reset, counts = counter_step(
        params.limit,
        params.window_ticks,
        params.tick_us,
        None if state is None else (state.index, state.previous, state.current),
        now,
        cost,
        consume,
    )
    return (allowed, remaining, retry, reset), None if counts is None else CounterState(*counts)


def counter_step(
    limit: int,
    w: int,
    tick: int,
    state: CounterTuple | None,
    now: int,
    cost: int,
    consume: bool,
) -> tuple[bool, int, int, int, CounterTuple | None]:
    """One sliding-window-counter decision on plain integers (what the memory backend runs).

    The estimate at ``now`` is ``previous * (W - elapsed) / W + current`` with ``elapsed`` the
    time since the current window began; everything is multiplied by ``W`` to stay in integers.

    Args:
        limit: :attr:`CounterParams.limit`.
        w: :attr:`CounterParams.window_ticks`.
        tick: :attr:`CounterParams.tick_us`.
        state: ``(index, previous, current)`` as in :class:`CounterState`, or ``None``.
        now: the current time in µs.
        cost: the cost requested.
        consume: count the admission (``False`` for a peek).

    Returns:
        ``(allowed, remaining, retry_after_us, reset_after_us, new_state)``; ``new_state`` is
        ``None`` when nothing is counted any more.
    """
    t = now // tick
    if state is not None and t < state[0] * w:
        # The clock stepped back behind the stored window: decide at that window's start
        # rather than forget its counts.
        t = state[0] * w
    index = t // w
    previous = current = 0
    if state is not None:
        if state[0] == index:
            _, previous, current = state
        elif state[0] == index - 1:
            previous = state[2]
    start = index * w
    elapsed = t - start
    weighted = previous * (w - elapsed) + current * w
    if weighted + cost * w <= limit * w:
        if consume:
            current += cost
            weighted += cost * w
        remaining = (limit * w - weighted) // w
        if current > 0:
            reset = (start + 2 * w) * tick - now
        elif previous > 0:
            reset = (start + w) * tick - now
        else:
            reset = 0
        new_state = (index, previous, current) if previous or current else None
        return True, remaining, 0, reset, new_state
    spare = limit - current - cost
    if spare >= 0:
        # Admitted once previous * (W - e) <= spare * W within this window (previous > 0 here,
        # or the request would have been admitted).
        at = start + w - (spare * w) // previous
    elif current > 0:
        # Only after the boundary, when the current count becomes the previous one.
        at = start + 2 * w - ((limit - cost) * w) // current
    else:  # pragma: no cover - cost <= limit makes spare >= 0 whenever current == 0
        at = start + w
    remaining = max(0, (limit * w - weighted) // w)
    reset = (start + 2 * w) * tick - now if current > 0 else (start + w) * tick - now
    new_state = (index, previous, current) if previous or current else None
    return False, remaining, at * tick - now, reset, new_state


# --------------------------------------------------------------------------------------------
# Sliding log


@dataclass(frozen=True, slots=True)
class LogParams:
    """A validated exact sliding log: at most ``limit`` in any window of ``window`` seconds.

    Attributes:
        limit: the cost admitted per window, a whole number >= 1.
        window: the window in seconds (as given).
        window_us: the window in µs.
    """

    limit: int
    window: float
    window_us: int = field(init=False)

    def __post_init__(self) -> None:
        limit = _whole("limit", self.limit, 1)
        window_us = seconds_to_us("window", self.window)
        if window_us >= MAX_EXACT // 4:
            raise ConfigurationError(f"window is too long, got {self.window!r}")
        object.__setattr__(self, "limit", limit)
        object.__setattr__(self, "window", float(self.window))
        object.__setattr__(self, "window_us", window_us)


@dataclass(frozen=True, slots=True)
class LogUpdate:
    """How to change a log: drop ``expired`` entries from the front, then maybe append.

    The log itself is not copied: copying would make every decision O(live entries). The core
    reads the log (front entries only) and describes the change; the caller applies it.

    Attributes:
        expired: how many entries at the front have left the window.
        append: the cost to record at ``at`` (merged into the last entry when it has the same
            time), or 0.
        at: the time the decision was taken at (``now``, or the last admission if later).
        total: the live total after the change.
    """

    expired: int
    append: int
    at: int
    total: int


def log_decide(
    params: LogParams,
    times: Sequence[int],
    costs: Sequence[int],
    total: int,
    now: int,
    cost: int,
    consume: bool,
) -> tuple[Verdict, LogUpdate]:
    """One exact sliding-log decision (:func:`log_step` with a dataclass update).

    Args:
        params: the limit and window.
        times: admission times in ascending order (the log; only its ends are read).
        costs: the cost admitted at each time.
        total: the sum of ``costs``.
        now: the current time in µs. If it is before the last admission (a clock stepped back,
            or pinned clocks that disagree), the decision is taken at the last admission's time
            so the log stays sorted; durations are still reported from ``now``.
        cost: the cost requested.
        consume: record the admission (``False`` for a peek).

    Returns:
        ``(verdict, update)``.
    """
    allowed, remaining, retry, reset, expired, append, at, new_total = log_step(
        params.window_us, params.limit, times, costs, total, now, cost, consume
    )
    return (allowed, remaining, retry, reset), LogUpdate(expired, append, at, new_total)


def log_step(
    window: int,
    limit: int,
    times: Sequence[int],
    costs: Sequence[int],
    total: int,
    now: int,
    cost: int,
    consume: bool,
) -> tuple[bool, int, int, int, int, int, int, int]:
    """One exact sliding-log decision on plain integers (what the memory backend runs).

    Args:
        window: :attr:`LogParams.window_us`.
        limit: :attr:`LogParams.limit`.
        times: as in :func:`log_decide`.
        costs: as in :func:`log_decide`.
        total: as in :func:`log_decide`.
        now: as in :func:`log_decide`.
        cost: as in :func:`log_decide`.
        consume: as in :func:`log_decide`.

    Returns:
        ``(allowed, remaining, retry_after_us, reset_after_us, expired, append, at, total)``:
        the verdict, then the fields of :class:`LogUpdate`.
    """
    n = len(times)
    at = now
    if n and times[n - 1] > at:
        at = times[n - 1]
    horizon = at - window
    expired = 0
    # An admission at t counts during [t, t + window): it is gone once t <= at - window.
    while expired < n and times[expired] <= horizon:
        total -= costs[expired]
        expired += 1
    if total + cost <= limit:
        append = cost if consume else 0
        total += append
        if append:
            reset = at + window - now
        elif expired < n:
            reset = times[n - 1] + window - now
        else:
            reset = 0
        return True, limit - total, 0, reset, expired, append, at, total
    # Admitted once enough of the oldest entries have left: walk O(cost) entries.
    need = total + cost - limit
    i = expired
    freed = costs[i]
    while freed < need:
        i += 1
        freed += costs[i]
    retry = times[i] + window - now
    reset = times[n - 1] + window - now
    return False, limit - total, retry, reset, expired, 0, at, total
