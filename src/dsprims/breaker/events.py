"""Events and metrics of a circuit breaker: frozen values handed to callbacks and callers."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from dsprims.breaker.core import BreakerState

__all__ = ["BreakerMetrics", "CallEvent", "CallOutcome", "StateChangeEvent"]


class CallOutcome(enum.Enum):
    """How a call was classified."""

    SUCCESS = "success"
    """Recorded as a success (including exceptions neither recorded nor ignored)."""
    FAILURE = "failure"
    """Recorded as a failure (a ``record`` exception or a failing result predicate)."""
    IGNORED = "ignored"
    """Not recorded: an ``ignore`` exception, a cancellation, ``KeyboardInterrupt`` or
    ``SystemExit``, or an explicit ``permit.ignore()``. A half-open permit is given back."""
    REJECTED = "rejected"
    """The breaker refused the call (it never ran)."""


@dataclass(frozen=True, slots=True)
class StateChangeEvent:
    """The breaker moved from one state to another.

    Attributes:
        name: the breaker's name.
        from_state: the state left.
        to_state: the state entered.
        generation: generation number of the new state.
        at: when (seconds on the breaker's time base).
        reason: why, in words ("failure rate 6/10 >= 50%", "manual", ...).
        open_until: end of the open period when entering ``OPEN``, else 0.0.
    """

    name: str
    from_state: BreakerState
    to_state: BreakerState
    generation: int
    at: float
    reason: str
    open_until: float = 0.0


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One call finished (or was rejected).

    Attributes:
        name: the breaker's name.
        outcome: how the call was classified.
        generation: the generation the call was admitted in.
        counted: whether the outcome changed the breaker's statistics (False for ignored and
            rejected calls, for ``DISABLED``, and for results of an older generation).
        slow: whether the call took at least ``slow_call_duration``.
        duration: seconds the call took, when measured (slow-call detection on), else None.
        exception: the exception the call raised, if any.
    """

    name: str
    outcome: CallOutcome
    generation: int
    counted: bool
    slow: bool = False
    duration: float | None = None
    exception: BaseException | None = None


@dataclass(frozen=True, slots=True)
class BreakerMetrics:
    """A consistent snapshot of a breaker's statistics.

    Attributes:
        name: the breaker's name.
        state: the state when the snapshot was taken.
        generation: the state's generation.
        calls: calls in the sliding window.
        failed_calls: failures in the window.
        slow_calls: slow calls in the window.
        slow_failed_calls: slow failures in the window.
        consecutive_failures: failures since the last success.
        failure_rate: failures / calls, or None below ``minimum_calls``.
        slow_call_rate: slow / calls, or None below ``minimum_calls``.
        not_permitted_calls: rejections since the breaker was created or last reset.
        half_open_permits_in_use: trial permits issued and not yet settled.
        half_open_calls_done: trial outcomes recorded in this half-open period.
        retry_after: seconds until ``OPEN`` admits a trial (0.0 in other states).
        open_count: consecutive opens since the breaker last closed.
    """

    name: str
    state: BreakerState
    generation: int
    calls: int
    failed_calls: int
    slow_calls: int
    slow_failed_calls: int
    consecutive_failures: int
    failure_rate: float | None
    slow_call_rate: float | None
    not_permitted_calls: int
    half_open_permits_in_use: int
    half_open_calls_done: int
    retry_after: float
    open_count: int
