"""Lamport clocks (Lamport, "Time, Clocks, and the Ordering of Events in a Distributed System",
CACM 21(7), 1978).

A Lamport clock is one integer per process. Rule IR1: every local or send event increments it.
Rule IR2: a receive event sets it to ``max(local, remote) + 1``.

Guarantee (the clock condition): if event e happened before f, then ``C(e) < C(f)``. The converse
does not hold: ``C(e) < C(f)`` says nothing about causality (use vector clocks to decide that).
Pairing the value with a process id gives a total order consistent with causality.

Failure modes: none from time (no physical clock is read). Values are Python ints, so they never
overflow; a peer that sends a huge value jumps every receiver's clock forward by that much.

The rules are the pure functions :func:`lamport_tick` and :func:`lamport_receive`;
:class:`LamportClock` applies them under a lock.
"""

from __future__ import annotations

import threading
from typing import TypeVar

from dsprims.clocks.message import Stamped

__all__ = ["LamportClock", "lamport_receive", "lamport_tick"]

P = TypeVar("P")


def lamport_tick(value: int) -> int:
    """IR1: the timestamp of a local or send event after ``value``."""
    return value + 1


def lamport_receive(value: int, remote: int) -> int:
    """IR2: the timestamp of receiving a message stamped ``remote`` after ``value``."""
    return (value if value > remote else remote) + 1


def _check(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


class LamportClock:
    """A thread-safe Lamport clock.

    Args:
        start: the initial value (``>= 0``), e.g. restored after a restart.

    Raises:
        TypeError: ``start`` is not an ``int``.
        ValueError: ``start`` is negative.

    Example:
        >>> clock = LamportClock()
        >>> clock.tick(), clock.receive(10), clock.value
        (1, 11, 11)
    """

    __slots__ = ("_acquire", "_release", "_value")

    def __init__(self, start: int = 0) -> None:
        self._value = _check("start", start)
        lock = threading.Lock()
        # Bound methods in slots: cheaper than ``with lock`` on CPython 3.11 (see hlc.py).
        self._acquire = lock.acquire
        self._release = lock.release

    @property
    def value(self) -> int:
        """The current value (the timestamp of the last event)."""
        return self._value

    def tick(self) -> int:
        """A local or send event: increment and return the new value."""
        self._acquire()
        try:
            self._value = value = lamport_tick(self._value)
        finally:
            self._release()
        return value

    def receive(self, remote: int) -> int:
        """A receive event: set the clock to ``max(value, remote) + 1`` and return it.

        Raises:
            TypeError: ``remote`` is not an ``int``.
            ValueError: ``remote`` is negative.
        """
        if type(remote) is not int:
            _check("remote", remote)
        elif remote < 0:
            raise ValueError(f"remote must be >= 0, got {remote!r}")
        self._acquire()
        try:
            self._value = value = lamport_receive(self._value, remote)
        finally:
            self._release()
        return value

    def stamp(self, payload: P) -> Stamped[P, int]:
        """Timestamp an outgoing message (a send event) in one call."""
        return Stamped(payload, self.tick())

    def receive_message(self, message: Stamped[P, int]) -> Stamped[P, int]:
        """Merge an incoming message's timestamp (a receive event) in one call.

        Returns:
            The payload with the local receive timestamp.

        Raises:
            TypeError: ``message`` is not a :class:`Stamped` carrying an ``int``.
        """
        if not isinstance(message, Stamped):
            raise TypeError(f"message must be a Stamped, got {type(message).__name__}")
        return Stamped(message.payload, self.receive(message.timestamp))

    def __repr__(self) -> str:
        return f"LamportClock(value={self._value})"
