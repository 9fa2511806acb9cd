"""Locks with fencing tokens and loss detection, and the fenced store they protect.

* :class:`MemoryLock` / :class:`AsyncMemoryLock`: threads and tasks of one process.
* :class:`Lease` / :class:`AsyncLease`: what ``acquire()`` returns: ``token``, ``lost``,
  ``check()``, ``release()``, ``extend()``.
* :class:`FencedStore` / :class:`AsyncFencedStore`: a store that rejects stale tokens.

The decisions live in :mod:`dsprims.locks.core` (pure), the lease types in
:mod:`dsprims.locks.lease`. See ``docs/locks.md`` for when a lock is the right tool, and for the
guarantees and failure modes of each backend.
"""

from __future__ import annotations

from dsprims.locks.fenced import AsyncFencedStore, FencedStore
from dsprims.locks.lease import AsyncLease, AsyncLeaseDriver, Lease, LeaseBase, LeaseDriver
from dsprims.locks.memory import AsyncMemoryLock, MemoryLock
from dsprims.locks.redis import AsyncRedisLock, RedisLock
from dsprims.locks.redlock import AsyncRedlock, Redlock

__all__ = [
    "AsyncFencedStore",
    "AsyncLease",
    "AsyncLeaseDriver",
    "AsyncMemoryLock",
    "AsyncRedisLock",
    "AsyncRedlock",
    "FencedStore",
    "Lease",
    "LeaseBase",
    "LeaseDriver",
    "MemoryLock",
    "RedisLock",
    "Redlock",
]
