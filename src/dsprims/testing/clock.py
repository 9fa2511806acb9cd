"""A virtual clock for deterministic tests."""

from __future__ import annotations

import asyncio
import math
import threading

from dsprims.errors import ConfigurationError

__all__ = ["ManualClock"]


class ManualClock:
    """A clock that moves only when told to.

    ``monotonic()`` starts at ``start`` and the wall clock at ``int(start * 1e9)`` ns; both move
    together with :meth:`advance`, :meth:`set`, :meth:`sleep` and :meth:`asleep`.
    :meth:`set_wall_ns` moves the wall clock alone (backwards too), to simulate NTP steps and
    skew between nodes. Thread-safe.

    Example:
        >>> clock = ManualClock(start=100.0)
        >>> clock.advance(1.5)
        >>> clock.monotonic()
        101.5
    """

    __slots__ = ("_lock", "_mono", "_wall_ns")

    def __init__(self, start: float = 0.0) -> None:
        start = _finite("start", start)
        self._lock = threading.Lock()
        self._mono = start
        self._wall_ns = int(start * 1e9)

    def monotonic(self) -> float:
        """The current virtual monotonic time in seconds."""
        return self._mono

    def time_ns(self) -> int:
        """The current virtual wall-clock time in nanoseconds since the epoch."""
        return self._wall_ns

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds`` (must be >= 0)."""
        seconds = _finite("seconds", seconds)
        if seconds < 0:
            raise ConfigurationError(f"seconds must be >= 0, got {seconds!r}")
        with self._lock:
            self._mono += seconds
            self._wall_ns += round(seconds * 1e9)

    def set(self, seconds: float) -> None:
        """Move the monotonic clock to ``seconds`` (never backwards); the wall clock follows."""
        seconds = _finite("seconds", seconds)
        with self._lock:
            if seconds < self._mono:
                raise ConfigurationError(
                    f"seconds must not move the monotonic clock backwards "
                    f"({seconds!r} < {self._mono!r}); use set_wall_ns for wall-clock steps"
                )
            self._wall_ns += round((seconds - self._mono) * 1e9)
            self._mono = seconds

    def set_wall_ns(self, ns: int) -> None:
        """Set the wall clock alone, forwards or backwards; the monotonic clock stays."""
        if isinstance(ns, bool) or not isinstance(ns, int):
            raise TypeError(f"ns must be an int, got {type(ns).__name__}")
        with self._lock:
            self._wall_ns = ns

    def sleep(self, seconds: float) -> None:
        """Advance instead of sleeping; negative durations do nothing."""
        if seconds > 0:
            self.advance(seconds)

    async def asleep(self, seconds: float) -> None:
        """Advance instead of sleeping, then yield once to the event loop."""
        if seconds > 0:
            self.advance(seconds)
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"ManualClock(monotonic={self._mono!r}, time_ns={self._wall_ns!r})"


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ConfigurationError(f"{name} must be finite, got {value!r}")
    return float(value)
