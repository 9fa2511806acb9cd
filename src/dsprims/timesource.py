"""Time sources: the clock protocol every primitive takes as ``clock=``.

A clock has two readings. ``monotonic()`` (float seconds, arbitrary origin) measures durations and
never goes backwards; ``time_ns()`` (int nanoseconds since the Unix epoch) is the wall clock, which
can jump either way. Waiting goes through the clock too (``sleep``/``asleep``), so a test that
passes :class:`~dsprims.ManualClock` drives every timeout and back-off without real sleeps.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """What dsprims needs from a time source."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    def time_ns(self) -> int:
        """Wall-clock time in nanoseconds since the Unix epoch."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds`` of this clock's time."""
        ...

    async def asleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clocks of this process: :func:`time.monotonic` and :func:`time.time_ns`."""

    __slots__ = ()

    # Bound as staticmethods so a call costs one C call, not a Python frame: clocks sit on the
    # hot path of every limiter decision and HLC tick.
    monotonic = staticmethod(time.monotonic)
    time_ns = staticmethod(time.time_ns)

    def sleep(self, seconds: float) -> None:
        """Sleep for real; negative durations return at once."""
        if seconds > 0:
            time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        """``asyncio.sleep`` for real; negative durations still yield once to the loop."""
        await asyncio.sleep(max(seconds, 0.0))

    def __repr__(self) -> str:
        return "SystemClock()"


#: Shared default instance; SystemClock holds no state.
SYSTEM_CLOCK = SystemClock()
