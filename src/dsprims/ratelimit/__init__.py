"""Rate limiting: token bucket (GCRA), exact sliding log, sliding-window counter, composites.

Each algorithm is a pure core (:mod:`dsprims.ratelimit.core`) run by the memory backend under its
lock and ported to one Redis Lua script (one ``EVALSHA`` per decision, server ``TIME``, Cluster-safe
keys). See :mod:`dsprims.ratelimit.limiters` for guarantees and failure modes.
"""

from __future__ import annotations

from dsprims.ratelimit.composite import AsyncCompositeLimiter, CompositeLimiter
from dsprims.ratelimit.decision import RateLimitDecision
from dsprims.ratelimit.limiters import (
    AsyncSlidingWindowCounter,
    AsyncSlidingWindowLog,
    AsyncTokenBucket,
    OutagePolicy,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
)

__all__ = [
    "AsyncCompositeLimiter",
    "AsyncSlidingWindowCounter",
    "AsyncSlidingWindowLog",
    "AsyncTokenBucket",
    "CompositeLimiter",
    "OutagePolicy",
    "RateLimitDecision",
    "SlidingWindowCounter",
    "SlidingWindowLog",
    "TokenBucket",
]
