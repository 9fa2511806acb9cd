"""The envelope the clocks' message helpers put around a payload."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Stamped"]

P = TypeVar("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Stamped(Generic[P, T]):
    """A message payload together with a clock's timestamp.

    The clocks' ``stamp(payload)`` returns one for an outgoing message (a send event), and
    their ``receive_message(message)`` returns one for an incoming message, carrying the
    receive event's local timestamp.

    Attributes:
        payload: the application's message.
        timestamp: an ``int`` (Lamport), a :class:`~dsprims.clocks.VectorClock` or an
            :class:`HLCTimestamp`.
    """

    payload: P
    timestamp: T
