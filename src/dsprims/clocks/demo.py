"""Demo section: three clocks on one message sequence, a refused skewed peer, a backward jump."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dsprims.clocks.dvv import DVVSet
from dsprims.clocks.hlc import HLCTimestamp, HybridLogicalClock
from dsprims.clocks.vector import VectorClockNode
from dsprims.errors import ClockSkewError
from dsprims.testing.clock import ManualClock

if TYPE_CHECKING:
    from dsprims.cli import DemoOptions, DemoOutput

TITLE = "Logical clocks: causality that survives skewed and jumping clocks"

_T0 = 1_700_000_000_000_000_000


def run(out: DemoOutput, options: DemoOptions) -> None:
    """Show HLC and vector clock timestamps for a small exchange, then the failure handling."""
    del options  # the clocks are in-process: no backend
    a_time, b_time = ManualClock(), ManualClock()
    a_time.set_wall_ns(_T0 + 300_000_000)  # node A's clock runs 300 ms ahead
    b_time.set_wall_ns(_T0)
    a = HybridLogicalClock(clock=a_time, max_offset=0.5)
    b = HybridLogicalClock(clock=b_time, max_offset=0.5)
    va, vb = VectorClockNode("A"), VectorClockNode("B")

    out.line("Node A's physical clock is 300 ms ahead of node B's (max_offset = 0.5 s).")
    rows = []
    m1 = a.stamp("put x=1")
    v1 = va.stamp("put x=1")
    rows.append(["A sends put x=1", str(m1.timestamp), v1.timestamp.to_json()])
    r1 = b.receive_message(m1)
    w1 = vb.receive_message(v1)
    rows.append(["B receives it", str(r1.timestamp), w1.timestamp.to_json()])
    b2 = b.now()
    w2 = vb.tick()
    rows.append(["B local event", str(b2), w2.to_json()])
    a2 = a.now()
    v2 = va.tick()
    rows.append(["A local event", str(a2), v2.to_json()])
    out.table(["event", "HLC timestamp (sorts as text)", "vector clock"], rows)
    out.good(
        f"B's clock took A's wall time and counts causal steps: logical = {r1.timestamp.logical}, "
        f"{b2.logical}; B's own clock is 300 ms behind but its timestamps never go backwards."
    )
    out.good(
        f"Vector clocks see that B's local event and A's local event are "
        f"{w2.compare(v2).value.upper()}; the HLC orders them anyway "
        f"({'B first' if b2 < a2 else 'A first'}), which says nothing about causality."
    )

    rogue = HLCTimestamp(_T0 + 5_000_000_000, 0)
    try:
        b.update(rogue)
    except ClockSkewError as exc:
        out.bad(f"A peer 5 s ahead is refused: ClockSkewError: {exc}")
    out.line(f"B's clock is unchanged: last = {b.last}")

    b_time.set_wall_ns(_T0 - 2_000_000_000)  # NTP steps B's clock back by 2 s
    after = b.now()
    out.good(
        f"After a 2 s backward step B still issues larger timestamps: {after} "
        f"(backward jumps seen: {b.stats().backward_jumps})"
    )
    out.line(
        f"Encodings: 12 bytes {after.to_bytes().hex()} | 64-bit {after.to_int()} | text {after}"
    )

    state = DVVSet[str]().put("cart=[tea]", None, "server-1")
    context = state.context()
    state = state.put("cart=[tea, cake]", context, "server-1")
    state = state.put("cart=[]", context, "server-1")  # same stale context: a real conflict
    out.good(f"Dotted version vectors keep concurrent writes as siblings: {sorted(state.values)}")
