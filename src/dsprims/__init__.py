"""dsprims: typed distributed-systems primitives.

Consistent hashing, rate limiters, circuit breakers, logical clocks and fenced locks, in memory
(the default), on Redis and on ZooKeeper. Everything public is importable from here; the Redis
and ZooKeeper backends load their drivers on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dsprims.backends import (
    AsyncMemoryBackend,
    MemoryBackend,
    async_backend_from_url,
    backend_from_url,
)
from dsprims.errors import (
    BackendError,
    BackendUnavailable,
    CircuitOpenError,
    ClockSkewError,
    ConfigurationError,
    DsprimsError,
    LockError,
    LockLost,
    LockNotAcquired,
    LockNotOwned,
    RateLimitExceeded,
    StaleTokenError,
)

# Each area adds its imports in its own block below, so parallel work merges cleanly.
# -- consistent hashing (dsprims.hashing) --
from dsprims.hashing import (
    BoundedLoadBalancer,
    EmptyRingError,
    HashRing,
    JumpHash,
    MaglevHash,
    Move,
    RendezvousHash,
    jump_hash,
)

# -- rate limiting (dsprims.ratelimit) --
from dsprims.ratelimit import (
    AsyncCompositeLimiter,
    AsyncSlidingWindowCounter,
    AsyncSlidingWindowLog,
    AsyncTokenBucket,
    CompositeLimiter,
    RateLimitDecision,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
)

# isort: split
# -- circuit breaking (dsprims.breaker) --
from dsprims.breaker import (
    AsyncCircuitBreaker,
    AsyncPermit,
    BreakerMetrics,
    BreakerState,
    CallEvent,
    CallOutcome,
    CircuitBreaker,
    Permit,
    StateChangeEvent,
)

# -- logical clocks (dsprims.clocks) --
from dsprims.clocks import (
    DVVSet,
    HLCTimestamp,
    HybridLogicalClock,
    LamportClock,
    Ordering,
    PrunePolicy,
    Stamped,
    VectorClock,
    VectorClockNode,
)

# -- locks and fencing (dsprims.locks) --
from dsprims.locks import (
    AsyncFencedStore,
    AsyncLease,
    AsyncMemoryLock,
    AsyncRedisLock,
    AsyncRedlock,
    FencedStore,
    Lease,
    MemoryLock,
    RedisLock,
    Redlock,
)
from dsprims.testing.clock import ManualClock
from dsprims.timesource import Clock, SystemClock

# -- end of area blocks --

if TYPE_CHECKING:
    from dsprims.backends.redis import AsyncRedisBackend, RedisBackend
    from dsprims.backends.zookeeper import ZooKeeperBackend
    from dsprims.locks.zookeeper import AsyncZooKeeperLock, ZooKeeperLock

__version__ = "0.1.0.dev0"

__all__ = [  # grouped by area (RUF022 is off for this reason)
    # -- consistent hashing --
    "BoundedLoadBalancer",
    "EmptyRingError",
    "HashRing",
    "JumpHash",
    "MaglevHash",
    "Move",
    "RendezvousHash",
    "jump_hash",
    # -- rate limiting --
    "AsyncCompositeLimiter",
    "AsyncSlidingWindowCounter",
    "AsyncSlidingWindowLog",
    "AsyncTokenBucket",
    "CompositeLimiter",
    "RateLimitDecision",
    "SlidingWindowCounter",
    "SlidingWindowLog",
    "TokenBucket",
    # -- circuit breaking --
    "AsyncCircuitBreaker",
    "AsyncPermit",
    "BreakerMetrics",
    "BreakerState",
    "CallEvent",
    "CallOutcome",
    "CircuitBreaker",
    "Permit",
    "StateChangeEvent",
    # -- logical clocks --
    "DVVSet",
    "HLCTimestamp",
    "HybridLogicalClock",
    "LamportClock",
    "Ordering",
    "PrunePolicy",
    "Stamped",
    "VectorClock",
    "VectorClockNode",
    # -- locks and fencing --
    "AsyncFencedStore",
    "AsyncLease",
    "AsyncMemoryLock",
    "AsyncRedisLock",
    "AsyncRedlock",
    "AsyncZooKeeperLock",
    "FencedStore",
    "Lease",
    "MemoryLock",
    "RedisLock",
    "Redlock",
    "ZooKeeperLock",
    # -- foundation --
    "AsyncMemoryBackend",
    "AsyncRedisBackend",
    "BackendError",
    "BackendUnavailable",
    "CircuitOpenError",
    "Clock",
    "ClockSkewError",
    "ConfigurationError",
    "DsprimsError",
    "LockError",
    "LockLost",
    "LockNotAcquired",
    "LockNotOwned",
    "ManualClock",
    "MemoryBackend",
    "RateLimitExceeded",
    "RedisBackend",
    "StaleTokenError",
    "SystemClock",
    "ZooKeeperBackend",
    "__version__",
    "async_backend_from_url",
    "backend_from_url",
]

_LAZY = {
    "RedisBackend": "dsprims.backends.redis",
    "AsyncRedisBackend": "dsprims.backends.redis",
    "ZooKeeperBackend": "dsprims.backends.zookeeper",
    # locks and fencing: ZooKeeper (kazoo is an optional extra)
    "ZooKeeperLock": "dsprims.locks.zookeeper",
    "AsyncZooKeeperLock": "dsprims.locks.zookeeper",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dsprims' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
