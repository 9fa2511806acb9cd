"""Logical clocks: Lamport, vector and hybrid logical clocks.

* :class:`LamportClock` — one integer; respects causality (e → f implies C(e) < C(f)).
* :class:`VectorClock` — characterises causality exactly, including concurrency; size grows with
  the number of writers.
* :class:`DVVSet` — dotted version vector sets: the siblings of a replicated key, with exact
  conflict detection and one counter per coordinating node.
* :class:`HybridLogicalClock` — Lamport-like causality in a 12-byte timestamp that stays within
  ``max_offset`` of physical time.

All three offer ``stamp(payload)`` / ``receive_message(message)`` for messages (vector clocks
through :class:`VectorClockNode`). No backend and no async twin: the clocks are in-process values
guarded by a plain lock, and never block.
"""

from __future__ import annotations

from dsprims.clocks.dvv import DVVSet
from dsprims.clocks.hlc import (
    MAX_LOGICAL,
    MAX_WALL_NS,
    HLCStats,
    HLCTimestamp,
    HybridLogicalClock,
    hlc_receive,
    hlc_send,
)
from dsprims.clocks.lamport import LamportClock, lamport_receive, lamport_tick
from dsprims.clocks.message import Stamped
from dsprims.clocks.vector import Ordering, PrunePolicy, VectorClock, VectorClockNode

__all__ = [
    "DVVSet",
    "MAX_LOGICAL",
    "MAX_WALL_NS",
    "HLCStats",
    "HLCTimestamp",
    "HybridLogicalClock",
    "LamportClock",
    "Ordering",
    "PrunePolicy",
    "Stamped",
    "VectorClock",
    "VectorClockNode",
    "hlc_receive",
    "hlc_send",
    "lamport_receive",
    "lamport_tick",
]
