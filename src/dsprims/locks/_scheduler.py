"""The lease watchdog's timers: one daemon thread per process, the event loop for asyncio.

Renewing each lock from its own thread would cost a thread per held lock; instead every sync
lease in the process shares one daemon thread that sleeps on a heap of deadlines (the classic
timer-wheel-less design of ``sched``, with lazy deletion of cancelled entries). Asyncio leases
use their event loop's own timer heap (``loop.call_later``), so each loop is its own scheduler.

Jobs run on the scheduler thread one after another: a renewal that blocks (a slow server) delays
the others, which is why renewals start after a third of the lease and keep a safety margin.
After ``os.fork`` the child starts a fresh thread on first use.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable

__all__ = ["Scheduler", "shared_scheduler"]

logger = logging.getLogger(__name__)


class Scheduler:
    """Runs callbacks at monotonic instants on one daemon thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        # [when, seq, fn]; a cancelled entry has fn = None and is skipped when popped.
        self._heap: list[list[object]] = []
        self._seq = itertools.count()
        self._cancelled = 0
        self._thread: threading.Thread | None = None
        # When the thread will next wake up on its own (inf: not until notified). Only an entry
        # due before that needs a notify: waking the thread for every lease would cost a GIL
        # hand-off per acquire.
        self._wakeup_at = float("inf")

    def call_later(self, delay: float, fn: Callable[[], None]) -> Callable[[], None]:
        """Run ``fn()`` after ``delay`` seconds (real time); return a cancel function."""
        when = time.monotonic() + max(delay, 0.0)
        entry: list[object] = [when, next(self._seq), fn]
        with self._cond:
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="dsprims-lock-watchdog", daemon=True
                )
                self._thread.start()
            elif when < self._wakeup_at:
                self._wakeup_at = when
                self._cond.notify()

        def cancel() -> None:
            with self._cond:
                if entry[2] is not None:
                    entry[2] = None
                    self._cancelled += 1
                    if self._cancelled > 64 and self._cancelled > len(self._heap) // 2:
                        self._heap = [e for e in self._heap if e[2] is not None]
                        heapq.heapify(self._heap)
                        self._cancelled = 0

        return cancel

    def pending(self) -> int:
        """How many live (not cancelled) callbacks are waiting, for tests and diagnostics."""
        with self._cond:
            return sum(1 for e in self._heap if e[2] is not None)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    while self._heap and self._heap[0][2] is None:
                        heapq.heappop(self._heap)
                        self._cancelled -= 1
                    if not self._heap:
                        self._wakeup_at = float("inf")
                        self._cond.wait()
                        continue
                    when = float(self._heap[0][0])  # type: ignore[arg-type]
                    wait = when - time.monotonic()
                    if wait <= 0:
                        fn = heapq.heappop(self._heap)[2]
                        break
                    self._wakeup_at = when
                    self._cond.wait(wait)
            try:
                fn()  # type: ignore[operator]
            except Exception:
                logger.exception("lock watchdog job failed")

    def _reset_after_fork(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap = []
        self._cancelled = 0
        self._thread = None
        self._wakeup_at = float("inf")


_SHARED = Scheduler()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_SHARED._reset_after_fork)


def shared_scheduler() -> Scheduler:
    """The process-wide watchdog scheduler."""
    return _SHARED
