"""Logical clocks against the physical floor (one ``time.time_ns()`` call) and the peers.

Goals (issue 6), as the largest acceptable ``ours / row`` ratio:

* thread-safe ``HybridLogicalClock.now()`` <= 6x ``time.time_ns()``; ``update()`` <= 9x;
* ``VectorClock`` merge and compare at 100 entries >= 4x faster than the ``vectorclock`` package
  (ratio <= 0.25; it has no merge, so the peer row is a merge written over its public API);
* at 3 entries, ~1 µs-class (no peer goal; read the absolute numbers).
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import hlcpy
import pytest
from vectorclock import vectorclock as vc_peer

from benchmarks.conftest import Contender
from dsprims import HLCTimestamp, HybridLogicalClock, LamportClock, VectorClock

# Sub-microsecond operations: half a second per row is plenty and keeps the file under a minute
# on a loaded machine.
pytestmark = pytest.mark.benchmark(max_time=0.4)

# -- HLC -----------------------------------------------------------------------------------------

# The goal groups run their rows interleaved (the ``compare`` fixture: alternating batches of
# back-to-back calls, ratios are medians of per-round ratios), so the machine's load hits every
# row alike. Rows taking arguments are ``functools.partial`` objects (C code: no extra frame).
NOW = "clocks: HLC now() (thread-safe)"
UPDATE = "clocks: HLC update(remote) (thread-safe)"


def test_hlc_now(compare: Any) -> None:
    clock = HybridLogicalClock()
    peer = hlcpy.HLC.from_now()
    compare(
        NOW,
        [
            Contender("ours", "HybridLogicalClock.now", clock.now),
            Contender("floor", "time.time_ns()", time.time_ns, goal=6.0),
            Contender("peer", "hlcpy HLC.sync", peer.sync),
        ],
    )


def _remote() -> HLCTimestamp:
    # A peer's timestamp from a moment ago: the common case of a receive.
    return HLCTimestamp(time.time_ns() - 1_000_000, 3)


def test_hlc_update(compare: Any) -> None:
    clock = HybridLogicalClock()
    peer = hlcpy.HLC.from_now()
    peer_remote = hlcpy.HLC(time.time_ns() - 1_000_000, 3)
    compare(
        UPDATE,
        [
            Contender("ours", "HybridLogicalClock.update", partial(clock.update, _remote())),
            Contender("floor", "time.time_ns()", time.time_ns, goal=9.0),
            Contender("peer", "hlcpy HLC.merge (no skew guard)", partial(peer.merge, peer_remote)),
        ],
    )


ENCODE = "clocks: HLC timestamp encode + decode"


def test_hlc_bytes_ours(mark: Any) -> None:
    ts = HybridLogicalClock().now()

    def round_trip() -> HLCTimestamp:
        return HLCTimestamp.from_bytes(ts.to_bytes())

    mark(ENCODE, "ours", "to_bytes/from_bytes (12 B, lossless)")(round_trip)


def test_hlc_bytes_hlcpy(mark: Any) -> None:
    ts = hlcpy.HLC.from_now()

    def round_trip() -> Any:
        return hlcpy.HLC.from_bytes(ts.to_bytes())

    mark(ENCODE, "peer", "hlcpy to_bytes/from_bytes (8 B, ms, lossy)")(round_trip)


# -- Lamport -------------------------------------------------------------------------------------


def test_lamport_tick_ours(mark: Any) -> None:
    clock = LamportClock()
    mark("clocks: Lamport tick (thread-safe)", "ours", "LamportClock.tick")(clock.tick)


def test_lamport_tick_floor(mark: Any) -> None:
    mark("clocks: Lamport tick (thread-safe)", "floor", "time.time_ns()")(time.time_ns)


# -- vector clocks -------------------------------------------------------------------------------


def _pair(n: int) -> tuple[dict[str, int], dict[str, int]]:
    # Same nodes, each side ahead on half of them: concurrent, the merge touches every entry.
    a = {f"node-{i:03d}": 10 + (i % 2) for i in range(n)}
    b = {f"node-{i:03d}": 10 + ((i + 1) % 2) for i in range(n)}
    return a, b


def _before_pair(n: int) -> tuple[dict[str, int], dict[str, int]]:
    # b descends from a by one event on the last node: compare must scan every entry.
    a = {f"node-{i:03d}": 10 + i for i in range(n)}
    b = dict(a)
    b[f"node-{n - 1:03d}"] += 1
    return a, b


def _peer_merge(a: Any, b: Any) -> Any:
    # vectorclock has no merge: the pointwise max over its public API.
    out = vc_peer.VectorClock(a.clocks)
    for node, count in b.clocks.items():
        if count > out.get_clock(node, 0):
            out.set_clock(node, count)
    return out


def test_vector_merge_3_ours(mark: Any) -> None:
    a, b = _pair(3)
    mark("clocks: vector merge (3 entries)", "ours", "VectorClock.merge")(
        VectorClock(a).merge, VectorClock(b)
    )


def test_vector_merge_3_peer(mark: Any) -> None:
    a, b = _pair(3)
    mark("clocks: vector merge (3 entries)", "peer", "vectorclock 0.5 (merge via API)")(
        _peer_merge, vc_peer.VectorClock(a), vc_peer.VectorClock(b)
    )


def test_vector_compare_3_ours(mark: Any) -> None:
    a, b = _before_pair(3)
    mark("clocks: vector compare (3 entries)", "ours", "VectorClock.compare")(
        VectorClock(a).compare, VectorClock(b)
    )


def test_vector_compare_3_peer(mark: Any) -> None:
    a, b = _before_pair(3)
    mark("clocks: vector compare (3 entries)", "peer", "vectorclock 0.5 compare")(
        vc_peer.VectorClock(a).compare, vc_peer.VectorClock(b), False
    )


def test_vector_merge_100(compare: Any) -> None:
    a, b = _pair(100)
    compare(
        "clocks: vector merge (100 entries)",
        [
            Contender("ours", "VectorClock.merge", partial(VectorClock(a).merge, VectorClock(b))),
            Contender(
                "peer",
                "vectorclock 0.5 (merge via API)",
                partial(_peer_merge, vc_peer.VectorClock(a), vc_peer.VectorClock(b)),
                goal=0.25,
            ),
        ],
    )


def test_vector_compare_100(compare: Any) -> None:
    a, b = _before_pair(100)
    compare(
        "clocks: vector compare (100 entries)",
        [
            Contender(
                "ours", "VectorClock.compare", partial(VectorClock(a).compare, VectorClock(b))
            ),
            Contender(
                "peer",
                "vectorclock 0.5 compare",
                partial(vc_peer.VectorClock(a).compare, vc_peer.VectorClock(b), False),
                goal=0.25,
            ),
        ],
    )


# One clock knows a node the other has not heard of yet: the realigning path.
UNALIGNED_MERGE = "clocks: vector merge (100 vs 101 entries)"
UNALIGNED_COMPARE = "clocks: vector compare (100 vs 101 entries)"


def _unaligned() -> tuple[dict[str, int], dict[str, int]]:
    a, b = _pair(100)
    b["node-new"] = 1
    return a, b


def test_vector_merge_unaligned_ours(mark: Any) -> None:
    a, b = _unaligned()
    mark(UNALIGNED_MERGE, "ours", "VectorClock.merge")(VectorClock(a).merge, VectorClock(b))


def test_vector_merge_unaligned_peer(mark: Any) -> None:
    a, b = _unaligned()
    mark(UNALIGNED_MERGE, "peer", "vectorclock 0.5 (merge via API)")(
        _peer_merge, vc_peer.VectorClock(a), vc_peer.VectorClock(b)
    )


def test_vector_compare_unaligned_ours(mark: Any) -> None:
    a, b = _before_pair(100)
    b["node-new"] = 1
    mark(UNALIGNED_COMPARE, "ours", "VectorClock.compare")(VectorClock(a).compare, VectorClock(b))


def test_vector_compare_unaligned_peer(mark: Any) -> None:
    a, b = _before_pair(100)
    b["node-new"] = 1
    mark(UNALIGNED_COMPARE, "peer", "vectorclock 0.5 compare")(
        vc_peer.VectorClock(a).compare, vc_peer.VectorClock(b), False
    )


def test_vector_increment_3_ours(mark: Any) -> None:
    clock = VectorClock({"a": 1, "b": 2, "c": 3})
    mark("clocks: vector increment (3 entries)", "ours", "VectorClock.increment")(
        clock.increment, "b"
    )


def test_vector_increment_3_peer(mark: Any) -> None:
    clock = vc_peer.VectorClock({"a": 1, "b": 2, "c": 3})

    def increment() -> None:
        clock.set_clock("b", clock.get_clock("b", 0) + 1)

    mark("clocks: vector increment (3 entries)", "peer", "vectorclock 0.5 set_clock (mutates)")(
        increment
    )
