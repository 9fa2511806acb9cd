"""The pure core of the circuit breaker: parameters, state, sliding windows and transitions.

The algorithm follows Resilience4j's CircuitBreaker (resilience4j.readme.io/docs/circuitbreaker):
a breaker in ``CLOSED`` records call outcomes in a sliding window (the last ``window_size`` calls,
or the calls of the last ``window_size`` seconds in one-bucket-per-slice partial aggregates) and
trips to ``OPEN`` once at least ``minimum_calls`` are recorded and the failure rate or the
slow-call rate reaches its threshold. ``OPEN`` rejects calls for the open duration (fixed,
exponential in the number of consecutive opens, optionally jittered, always capped), then lets
exactly ``half_open_calls`` trial calls through in ``HALF_OPEN``; their verdict closes or re-opens
the breaker. ``DISABLED`` and ``FORCED_OPEN`` are manual states that never change on their own.

Everything here is deterministic and imports no clock, thread, asyncio or driver: transitions are
pure functions ``(snapshot, now, request, params) -> (result, new snapshot, transitions)`` over
frozen dataclasses; randomness (jitter) is an input ``u`` in ``[0, 1)``. The sync and async
shells and the Redis fleet mode all run these same functions.

One deliberate exception to immutability: the sliding windows (:class:`CountWindow`,
:class:`TimeWindow`) are small mutable accumulators. A persistent window would copy
``window_size`` slots per call; the mutable ring records an outcome in O(1) with no allocation,
which is what keeps the CLOSED hot path cheaper than the peers'. Their methods are still pure of
I/O and deterministic, and their owner calls them under its lock.

Guarantees: a snapshot's ``generation`` increases on every transition, so outcomes of calls
admitted under an older generation are recognised and discarded. Half-open permits are counted
in the snapshot, so exactly ``half_open_calls`` trials run per half-open period whatever the
interleaving, as long as each snapshot update is atomic (the shells' lock, or a Redis script).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final, Literal

from dsprims.errors import ConfigurationError

__all__ = [
    "FAILURE",
    "SLOW",
    "SUCCESS",
    "Admission",
    "BreakerParams",
    "BreakerSnapshot",
    "BreakerState",
    "CountWindow",
    "TimeWindow",
    "Transition",
    "WindowCounts",
    "advance",
    "half_open_verdict",
    "make_window",
    "manual_transition",
    "next_open_duration",
    "on_acquire",
    "release_trial",
    "settle_trial",
    "trip",
]

#: Outcome codes recorded in the windows: a bit set. ``SUCCESS`` is 0.
SUCCESS: Final = 0
FAILURE: Final = 1
SLOW: Final = 2

#: Ceiling on any open duration (one day), so exponential growth without a cap stays finite.
MAX_OPEN_DURATION: Final = 86_400.0


class BreakerState(enum.Enum):
    """The five states of a circuit breaker."""

    CLOSED = "closed"
    """Calls pass and their outcomes are recorded; thresholds trip the breaker."""
    OPEN = "open"
    """Calls are rejected until the open duration has passed."""
    HALF_OPEN = "half_open"
    """A fixed number of trial calls pass; their verdict closes or re-opens the breaker."""
    DISABLED = "disabled"
    """Manual: every call passes, nothing is recorded, the state never changes by itself."""
    FORCED_OPEN = "forced_open"
    """Manual: every call is rejected, the state never changes by itself."""


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """What a sliding window currently holds (input of custom trip predicates).

    Attributes:
        calls: recorded calls (successes and failures; ignored calls are not recorded).
        failures: calls recorded as failures.
        slow: calls slower than ``slow_call_duration`` (failed or not).
        slow_failures: slow calls that also failed.
        consecutive_failures: failures since the last success.
    """

    calls: int
    failures: int
    slow: int
    slow_failures: int
    consecutive_failures: int

    @property
    def failure_rate(self) -> float:
        """Failures / calls, 0.0 for an empty window."""
        return self.failures / self.calls if self.calls else 0.0

    @property
    def slow_call_rate(self) -> float:
        """Slow calls / calls, 0.0 for an empty window."""
        return self.slow / self.calls if self.calls else 0.0


TripPredicate = Callable[[WindowCounts], bool]


def _check_rate(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (0.0 < value <= 1.0):
        raise ConfigurationError(f"{name} must be in (0, 1], got {value!r}")
    return float(value)


def _check_duration(name: str, value: float, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if math.isnan(value) or value < 0 or (positive and value == 0) or math.isinf(value):
        kind = "> 0" if positive else ">= 0"
        raise ConfigurationError(f"{name} must be finite and {kind} seconds, got {value!r}")
    return float(value)


def _check_count(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ConfigurationError(f"{name} must be >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class BreakerParams:
    """Validated breaker configuration (see :class:`~dsprims.CircuitBreaker` for meanings).

    Raises:
        ConfigurationError: a threshold outside (0, 1], a window or count < 1, a negative
            duration, or an unknown ``window_type``.
        TypeError: a parameter of the wrong type.
    """

    failure_rate_threshold: float = 0.5
    minimum_calls: int = 10
    window_size: float = 100
    window_type: Literal["count", "time"] = "count"
    slow_call_duration: float | None = None
    slow_call_rate_threshold: float = 1.0
    open_duration: float = 30.0
    open_duration_multiplier: float = 1.0
    max_open_duration: float | None = None
    open_duration_jitter: float = 0.0
    half_open_calls: int = 1
    max_half_open_wait: float | None = None
    consecutive_failures: int | None = None

    def __post_init__(self) -> None:
        _check_rate("failure_rate_threshold", self.failure_rate_threshold)
        _check_rate("slow_call_rate_threshold", self.slow_call_rate_threshold)
        _check_count("minimum_calls", self.minimum_calls)
        if self.window_type not in ("count", "time"):
            raise ConfigurationError(
                f"window_type must be 'count' or 'time', got {self.window_type!r}"
            )
        if self.window_type == "count":
            _check_count("window_size", self.window_size)  # type: ignore[arg-type]
        else:
            _check_duration("window_size", self.window_size)
            if self.window_size < 1:
                raise ConfigurationError(
                    f"window_size must be >= 1 second for a time window, got {self.window_size!r}"
                )
        if self.slow_call_duration is not None:
            _check_duration("slow_call_duration", self.slow_call_duration)
        _check_duration("open_duration", self.open_duration)
        if isinstance(self.open_duration_multiplier, bool) or not isinstance(
            self.open_duration_multiplier, int | float
        ):
            raise TypeError("open_duration_multiplier must be a number")
        if not (1.0 <= self.open_duration_multiplier < math.inf):
            raise ConfigurationError(
                f"open_duration_multiplier must be finite and >= 1, "
                f"got {self.open_duration_multiplier!r}"
            )
        if self.max_open_duration is not None:
            _check_duration("max_open_duration", self.max_open_duration)
            if self.max_open_duration < self.open_duration:
                raise ConfigurationError(
                    f"max_open_duration ({self.max_open_duration!r}) must be >= "
                    f"open_duration ({self.open_duration!r})"
                )
        if isinstance(self.open_duration_jitter, bool) or not isinstance(
            self.open_duration_jitter, int | float
        ):
            raise TypeError("open_duration_jitter must be a number")
        if not (0.0 <= self.open_duration_jitter <= 1.0):
            raise ConfigurationError(
                f"open_duration_jitter must be in [0, 1], got {self.open_duration_jitter!r}"
            )
        _check_count("half_open_calls", self.half_open_calls)
        if self.max_half_open_wait is not None:
            _check_duration("max_half_open_wait", self.max_half_open_wait, positive=True)
        if self.consecutive_failures is not None:
            _check_count("consecutive_failures", self.consecutive_failures)

    @property
    def effective_minimum_calls(self) -> int:
        """``minimum_calls``, capped at the window size for count windows (as Resilience4j)."""
        if self.window_type == "count":
            return min(self.minimum_calls, int(self.window_size))
        return self.minimum_calls


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """The breaker's state machine state (everything but the sliding window).

    Times are seconds on the breaker's time base (its clock's ``monotonic()`` locally, the
    shared server or pinned wall clock in fleet mode).

    Attributes:
        state: the current state.
        generation: bumped on every transition; permits carry the generation they were issued in.
        since: when the current state was entered.
        open_until: end of the open period (meaningful in ``OPEN``).
        open_count: consecutive opens since the breaker last closed (drives exponential backoff).
        permits_out: half-open permits issued and not yet settled or released.
        trial_calls: half-open trial outcomes recorded so far.
        trial_failures: of which failures.
        trial_slow: of which slow.
    """

    state: BreakerState = BreakerState.CLOSED
    generation: int = 0
    since: float = 0.0
    open_until: float = 0.0
    open_count: int = 0
    permits_out: int = 0
    trial_calls: int = 0
    trial_failures: int = 0
    trial_slow: int = 0


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change, as reported to listeners and logs.

    Attributes:
        from_state: the state left.
        to_state: the state entered.
        generation: the generation of the new state.
        at: when it happened (breaker time base, seconds).
        reason: a short human-readable cause.
        open_until: end of the open period when ``to_state`` is ``OPEN``, else 0.0.
    """

    from_state: BreakerState
    to_state: BreakerState
    generation: int
    at: float
    reason: str
    open_until: float = 0.0


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer to a request for a permit.

    Attributes:
        permitted: whether the call may run.
        generation: the generation the permit belongs to.
        trial: whether this is a half-open trial permit (it must be settled or released).
        record: whether the outcome is recorded (False in ``DISABLED``).
        retry_after: when rejected, seconds until a trial may be admitted (0.0 if unknown).
    """

    permitted: bool
    generation: int
    trial: bool = False
    record: bool = True
    retry_after: float = 0.0


NO_TRANSITIONS: Final[tuple[Transition, ...]] = ()
Step = tuple[BreakerSnapshot, tuple[Transition, ...]]


def next_open_duration(params: BreakerParams, open_count: int, u: float) -> float:
    """The open duration after ``open_count`` earlier consecutive opens, with jitter draw ``u``.

    ``open_duration * multiplier ** open_count``, spread by ``± jitter`` (uniform in ``u``), and
    capped by ``max_open_duration`` (or one day).
    """
    cap = params.max_open_duration if params.max_open_duration is not None else MAX_OPEN_DURATION
    base = params.open_duration
    if params.open_duration_multiplier > 1.0 and open_count > 0:
        try:
            base = base * params.open_duration_multiplier ** min(open_count, 4096)
        except OverflowError:
            base = cap
    base = min(base, cap)
    if params.open_duration_jitter:
        base *= 1.0 + params.open_duration_jitter * (2.0 * u - 1.0)
    return min(max(base, 0.0), cap)


def _enter(
    snap: BreakerSnapshot,
    to: BreakerState,
    now: float,
    reason: str,
    params: BreakerParams,
    u: float,
) -> Step:
    generation = snap.generation + 1
    if to is BreakerState.OPEN:
        until = now + next_open_duration(params, snap.open_count, u)
        new = BreakerSnapshot(to, generation, now, until, snap.open_count + 1)
    elif to is BreakerState.CLOSED:
        until = 0.0
        new = BreakerSnapshot(to, generation, now, 0.0, 0)
    else:
        until = 0.0
        new = BreakerSnapshot(to, generation, now, 0.0, snap.open_count)
    return new, (Transition(snap.state, to, generation, now, reason, until),)


def trip(snap: BreakerSnapshot, now: float, params: BreakerParams, reason: str, u: float) -> Step:
    """``CLOSED`` -> ``OPEN`` because the window crossed a threshold (no-op in other states)."""
    if snap.state is not BreakerState.CLOSED:
        return snap, NO_TRANSITIONS
    return _enter(snap, BreakerState.OPEN, now, reason, params, u)


def advance(snap: BreakerSnapshot, now: float, params: BreakerParams, u: float) -> Step:
    """The transitions time alone causes, each dated when it became due.

    An open period ends at ``open_until`` and the half-open period starts then, however late
    the breaker is next looked at; a half-open period that has waited ``max_half_open_wait``
    re-opens at that moment. The result therefore does not depend on when (or whether) anyone
    observed the breaker in between, which is what lets many processes agree on it.
    """
    transitions: tuple[Transition, ...] = ()
    for _ in range(64):  # each step moves time forward by > 0; the bound keeps one call O(1)
        if snap.state is BreakerState.OPEN and now >= snap.open_until:
            snap, step = _enter(
                snap, BreakerState.HALF_OPEN, snap.open_until, "open duration elapsed", params, u
            )
        elif (
            snap.state is BreakerState.HALF_OPEN
            and params.max_half_open_wait is not None
            and now - snap.since >= params.max_half_open_wait
        ):
            at = snap.since + params.max_half_open_wait
            snap, step = _enter(snap, BreakerState.OPEN, at, "half-open wait exceeded", params, u)
        else:
            break
        transitions += step
    return snap, transitions


def on_acquire(
    snap: BreakerSnapshot, now: float, params: BreakerParams, u: float
) -> tuple[Admission, BreakerSnapshot, tuple[Transition, ...]]:
    """Decide whether a call may run now; issue a half-open permit if one is free."""
    snap, transitions = advance(snap, now, params, u)
    state = snap.state
    if state is BreakerState.CLOSED:
        return Admission(True, snap.generation), snap, transitions
    if state is BreakerState.DISABLED:
        return Admission(True, snap.generation, record=False), snap, transitions
    if state is BreakerState.HALF_OPEN:
        if snap.permits_out + snap.trial_calls < params.half_open_calls:
            snap = replace(snap, permits_out=snap.permits_out + 1)
            return Admission(True, snap.generation, trial=True), snap, transitions
        return Admission(False, snap.generation, retry_after=0.0), snap, transitions
    if state is BreakerState.OPEN:
        retry = max(snap.open_until - now, 0.0)
        return Admission(False, snap.generation, retry_after=retry), snap, transitions
    return Admission(False, snap.generation, retry_after=0.0), snap, transitions


def half_open_verdict(
    trial_calls: int, trial_failures: int, trial_slow: int, params: BreakerParams
) -> str | None:
    """Why the finished trials re-open the breaker, or ``None`` when they close it."""
    if trial_failures / trial_calls >= params.failure_rate_threshold:
        return f"trial failure rate {trial_failures}/{trial_calls}"
    if params.slow_call_duration is not None and (
        trial_slow / trial_calls >= params.slow_call_rate_threshold
    ):
        return f"trial slow-call rate {trial_slow}/{trial_calls}"
    return None


def settle_trial(
    snap: BreakerSnapshot,
    now: float,
    generation: int,
    code: int,
    params: BreakerParams,
    u: float,
) -> tuple[bool, BreakerSnapshot, tuple[Transition, ...]]:
    """Record a half-open trial outcome (``code``: FAILURE/SLOW bits); verdict when all are in.

    Time-driven transitions due by ``now`` apply first (a trial that reports after
    ``max_half_open_wait`` re-opened the breaker belongs to an older generation). Returns
    ``(accepted, snapshot, transitions)``; an outcome from another generation is discarded
    (``accepted`` False) and changes nothing but those time-driven transitions.
    """
    snap, due = advance(snap, now, params, u)
    if snap.state is not BreakerState.HALF_OPEN or snap.generation != generation:
        return False, snap, due
    calls = snap.trial_calls + 1
    failures = snap.trial_failures + (code & FAILURE)
    slow = snap.trial_slow + (1 if code & SLOW else 0)
    if calls < params.half_open_calls:
        new = replace(
            snap,
            permits_out=max(snap.permits_out - 1, 0),
            trial_calls=calls,
            trial_failures=failures,
            trial_slow=slow,
        )
        return True, new, due
    reason = half_open_verdict(calls, failures, slow, params)
    if reason is None:
        new, transitions = _enter(
            snap, BreakerState.CLOSED, now, f"trial calls succeeded ({calls})", params, u
        )
    else:
        new, transitions = _enter(snap, BreakerState.OPEN, now, reason, params, u)
    return True, new, due + transitions


def release_trial(snap: BreakerSnapshot, generation: int) -> BreakerSnapshot:
    """Give an unused half-open permit back (the trial was ignored or cancelled)."""
    if snap.state is not BreakerState.HALF_OPEN or snap.generation != generation:
        return snap
    return replace(snap, permits_out=max(snap.permits_out - 1, 0))


def manual_transition(
    snap: BreakerSnapshot,
    now: float,
    target: BreakerState,
    params: BreakerParams,
    u: float,
    *,
    reset: bool = False,
    reason: str = "manual",
) -> Step:
    """Move to ``target`` on request; ``reset`` also forgets the consecutive-open count.

    A transition to the current state still starts a new generation (it restarts the open
    period, or clears the half-open trials), as Resilience4j's ``transitionTo*`` does.
    """
    if reset:
        snap = replace(snap, open_count=0)
    return _enter(snap, target, now, reason, params, u)


class CountWindow:
    """The last ``size`` recorded outcomes in a ring with running totals (O(1), no allocation)."""

    __slots__ = (
        "_i",
        "_minimum",
        "_params",
        "_predicate",
        "_ring",
        "_size",
        "calls",
        "consecutive",
        "failures",
        "slow",
        "slow_failures",
    )

    def __init__(self, params: BreakerParams, predicate: TripPredicate | None = None) -> None:
        self._params = params
        self._size = int(params.window_size)
        self._minimum = params.effective_minimum_calls
        self._predicate = predicate
        self.reset()

    def reset(self) -> None:
        """Forget every outcome."""
        self._ring = [-1] * self._size
        self._i = 0
        self.calls = self.failures = self.slow = self.slow_failures = self.consecutive = 0

    def record(self, code: int, now: float) -> str | None:
        """Add one outcome; return why the breaker must trip, or ``None``.

        ``now`` is unused (the signature is shared with :class:`TimeWindow`).
        """
        i = self._i
        ring = self._ring
        old = ring[i]
        ring[i] = code
        i += 1
        self._i = 0 if i == self._size else i
        if not code and not old and self._predicate is None:
            # A success replacing a success: no total moves, so no threshold can be newly
            # crossed (rates at or above one would have tripped when they got there).
            self.consecutive = 0
            return None
        if old < 0:
            self.calls += 1
        elif old:
            if old & FAILURE:
                self.failures -= 1
                if old & SLOW:
                    self.slow_failures -= 1
            if old & SLOW:
                self.slow -= 1
        if code:
            if code & FAILURE:
                self.failures += 1
                self.consecutive += 1
                if code & SLOW:
                    self.slow_failures += 1
            else:
                self.consecutive = 0
            if code & SLOW:
                self.slow += 1
        else:
            self.consecutive = 0
            if not (self.failures or self.slow or self._predicate):
                return None  # the hot path: nothing can have crossed a threshold
        return _verdict(self, self._params, self._minimum, self._predicate)

    def counts(self, now: float) -> WindowCounts:
        """The totals (``now`` unused)."""
        return WindowCounts(
            self.calls, self.failures, self.slow, self.slow_failures, self.consecutive
        )


class TimeWindow:
    """Outcomes of the last ``window_size`` seconds, aggregated in equal time buckets.

    The window is split into ``buckets`` slices (``max(10, min(100, ceil(window_size)))``); an
    outcome counts from when it is recorded until its slice is ``buckets`` slices old, that is
    for ``window_size`` seconds give or take one slice width (Resilience4j's partial
    aggregation, with one-second buckets for windows of 10 to 100 seconds). Slice ``i`` holds
    the readings ``t`` with ``t // width == i``.

    Recording a success is one comparison in the common case: :attr:`quiet_until` caches the
    first reading past the head slice while the last verdict still covers the window (see
    there), and a success before it only adds to the head slice's counts.
    """

    __slots__ = (
        "_b_calls",
        "_b_fail",
        "_b_slow",
        "_b_slow_fail",
        "_buckets",
        "_hb",
        "_head",
        "_head_end",
        "_minimum",
        "_params",
        "_predicate",
        "_width",
        "calls",
        "consecutive",
        "failures",
        "quiet_until",
        "slow",
        "slow_failures",
    )

    def __init__(self, params: BreakerParams, predicate: TripPredicate | None = None) -> None:
        self._params = params
        self._buckets = max(10, min(100, math.ceil(params.window_size)))
        self._width = params.window_size / self._buckets
        self._minimum = params.minimum_calls
        self._predicate = predicate
        self.reset()

    def reset(self) -> None:
        """Forget every outcome."""
        n = self._buckets
        self._b_calls = [0] * n
        self._b_fail = [0] * n
        self._b_slow = [0] * n
        self._b_slow_fail = [0] * n
        self._head: int | None = None
        #: The head slice's bucket, ``_head % _buckets`` (kept so the hot path need not divide).
        self._hb = 0
        #: The first reading past the head slice (computed once per slice, in ``_roll``).
        self._head_end = -math.inf
        #: A success recorded at a reading below this needs no verdict and expires nothing: it
        #: adds one call to the head slice (bucket ``_hb``) and resets ``consecutive``, exactly
        #: what :meth:`record` would do. Finite only while (a) the last change to the totals was
        #: a :meth:`record` whose verdict was evaluated with the minimum met and found nothing,
        #: or such successes after it (which only lower the rates), (b) no trip predicate is
        #: set, and (c) nothing expired since; it is then the first reading past the head slice.
        #: Otherwise -inf.
        self.quiet_until = -math.inf
        self.calls = self.failures = self.slow = self.slow_failures = self.consecutive = 0

    def _roll(self, now: float) -> int:
        idx = int(now // self._width)
        head = self._head
        if head is None:
            self._head = idx
            self._hb = idx % self._buckets
            self._head_end = self._slice_end(idx)
            return idx
        if idx <= head:
            return head  # a clock that did not move (or a late reading) records in the head
        n = self._buckets
        for step in range(head + 1, head + 1 + min(idx - head, n)):
            b = step % n
            if self._b_calls[b]:
                self.calls -= self._b_calls[b]
                self.failures -= self._b_fail[b]
                self.slow -= self._b_slow[b]
                self.slow_failures -= self._b_slow_fail[b]
                self._b_calls[b] = self._b_fail[b] = self._b_slow[b] = self._b_slow_fail[b] = 0
        self._head = idx
        self._hb = idx % n
        self._head_end = self._slice_end(idx)
        # Buckets may have expired: the rates moved without a verdict (counts() rolls too).
        self.quiet_until = -math.inf
        return idx

    def _slice_end(self, head: int) -> float:
        # The first float reading t with t // width > head. Float floor division is monotonic
        # in t (CPython computes the exact floor of the quotient), so every reading below it
        # lies in slice head or earlier. (head + 1) * width is within an ulp or two of it;
        # step to the exact boundary with the same operator the slices are defined by.
        width = self._width
        end = (head + 1) * width
        while end // width > head:
            end = math.nextafter(end, -math.inf)
        while end // width <= head:
            end = math.nextafter(end, math.inf)
        return end

    def record(self, code: int, now: float) -> str | None:
        """Add one outcome at ``now``; return why the breaker must trip, or ``None``."""
        if not code and now < self.quiet_until:
            # A success in the head slice with the last verdict still standing: it only lowers
            # the rates and expires nothing, so no threshold can be newly crossed.
            self._b_calls[self._hb] += 1
            self.calls += 1
            self.consecutive = 0
            return None
        if now // self._width != self._head:
            self._roll(now)
        b = self._hb
        self._b_calls[b] += 1
        self.calls += 1
        if code & FAILURE:
            self._b_fail[b] += 1
            self.failures += 1
            self.consecutive += 1
        else:
            self.consecutive = 0
        if code & SLOW:
            self._b_slow[b] += 1
            self.slow += 1
            if code & FAILURE:
                self._b_slow_fail[b] += 1
                self.slow_failures += 1
        if not (self.failures or self.slow or self._predicate):
            reason = None
        else:
            reason = _verdict(self, self._params, self._minimum, self._predicate)
        if reason is None and self.calls >= self._minimum and self._predicate is None:
            self.quiet_until = self._head_end
        else:
            self.quiet_until = -math.inf
        return reason

    def counts(self, now: float) -> WindowCounts:
        """The totals as of ``now`` (expired buckets dropped first)."""
        self._roll(now)
        return WindowCounts(
            self.calls, self.failures, self.slow, self.slow_failures, self.consecutive
        )


Window = CountWindow | TimeWindow


def make_window(params: BreakerParams, predicate: TripPredicate | None = None) -> Window:
    """The window ``params.window_type`` asks for."""
    if params.window_type == "count":
        return CountWindow(params, predicate)
    return TimeWindow(params, predicate)


def _verdict(
    w: Window, params: BreakerParams, minimum: int, predicate: TripPredicate | None
) -> str | None:
    if params.consecutive_failures is not None and w.consecutive >= params.consecutive_failures:
        return f"{w.consecutive} consecutive failures"
    calls = w.calls
    if calls >= minimum:
        if w.failures / calls >= params.failure_rate_threshold:
            return f"failure rate {w.failures}/{calls} >= {params.failure_rate_threshold:.0%}"
        if (
            params.slow_call_duration is not None
            and w.slow / calls >= params.slow_call_rate_threshold
        ):
            return f"slow-call rate {w.slow}/{calls} >= {params.slow_call_rate_threshold:.0%}"
    if predicate is not None and predicate(
        WindowCounts(calls, w.failures, w.slow, w.slow_failures, w.consecutive)
    ):
        return "trip predicate"
    return None
