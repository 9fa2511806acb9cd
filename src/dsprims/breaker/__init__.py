"""Circuit breakers with Resilience4j semantics, for sync and asyncio code.

See :mod:`dsprims.breaker.core` for the state machine and its guarantees, and
:mod:`dsprims.breaker.breaker` for the sync and async shells.
"""

from __future__ import annotations

from dsprims.breaker.breaker import AsyncCircuitBreaker, AsyncPermit, CircuitBreaker, Permit
from dsprims.breaker.core import BreakerParams, BreakerState, WindowCounts
from dsprims.breaker.events import BreakerMetrics, CallEvent, CallOutcome, StateChangeEvent
from dsprims.errors import CircuitOpenError

__all__ = [
    "AsyncCircuitBreaker",
    "AsyncPermit",
    "BreakerMetrics",
    "BreakerParams",
    "BreakerState",
    "CallEvent",
    "CallOutcome",
    "CircuitBreaker",
    "CircuitOpenError",
    "Permit",
    "StateChangeEvent",
    "WindowCounts",
]
