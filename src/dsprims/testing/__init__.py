"""Public test support for dsprims and for code built on it.

* :class:`ManualClock`: a virtual clock; pass it as ``clock=`` and advance time by hand.
* :mod:`dsprims.testing.servers`: start real ``redis-server`` / ZooKeeper processes on free
  loopback ports in temporary folders, kill, freeze (SIGSTOP) and restart them.
* :mod:`dsprims.testing.plugin`: pytest fixtures built on those (registered automatically via the
  ``pytest11`` entry point): ``redis_server``, ``redis_cluster``, ``zookeeper_server``,
  ``zookeeper_ensemble``, ``manual_clock``, ``memory_backend``, ``backend``, ``key_prefix``.
* :mod:`dsprims.testing.strategies`: hypothesis strategies for keys, hostile ones included.
"""

from __future__ import annotations

from dsprims.testing.clock import ManualClock

__all__ = ["ManualClock"]
