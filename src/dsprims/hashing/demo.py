"""Demo section: a hash ring, a rebalancing plan, libketama compatibility, and the alternatives."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from dsprims.hashing import (
    BoundedLoadBalancer,
    EmptyRingError,
    HashRing,
    JumpHash,
    MaglevHash,
    RendezvousHash,
)

if TYPE_CHECKING:
    from dsprims.cli import DemoOptions, DemoOutput

TITLE = "Consistent hashing: keys stay put when nodes come and go"


def run(out: DemoOutput, options: DemoOptions) -> None:
    """Show placement, a diff-based rebalancing plan and the five algorithms side by side."""
    del options  # rings are in-process values: no backend involved
    nodes = [f"cache-{i}" for i in range(4)]
    ring = HashRing(nodes)
    keys = [f"user:{i}" for i in range(20_000)]
    out.line(f"HashRing({nodes}) with {ring.vnodes} points per node:")
    out.table(
        ["key", "node", "replicas (failover order)"],
        [[k, ring.get_node(k), ", ".join(ring.get_nodes(k, 3))] for k in keys[:3]],
    )
    bigger = ring.copy()
    bigger.add_node("cache-4")
    plan = ring.diff(bigger)
    changed = [bigger.get_node(k) for k in keys if ring.get_node(k) != bigger.get_node(k)]
    moved = len(changed)
    out.line(
        f"Adding cache-4: diff() names {len(plan)} hash intervals "
        f"({sum(m.fraction for m in plan):.1%} of the key space), all moving to "
        f"{', '.join(sorted({m.target for m in plan}))}."
    )
    if set(changed) <= {"cache-4"}:
        out.good(
            f"{moved / len(keys):.1%} of {len(keys):,} sample keys moved, every one to cache-4."
        )
    else:
        out.bad("some keys moved between the old nodes")
    ketama = HashRing({"10.0.1.1:11211": 600, "10.0.1.2:11211": 300}, hash="ketama")
    out.line(f"hash='ketama' maps 'some-key' to {ketama.get_node('some-key')} as libketama would.")
    try:
        HashRing().get_node("k")
    except EmptyRingError as exc:
        out.bad(f"An empty ring refuses lookups: {exc}")

    out.line("")
    out.line("The same 20,000 keys on 5 nodes, five ways:")
    names = [f"n{i}" for i in range(5)]
    lookups = {
        "HashRing": HashRing(names).get_node,
        "JumpHash": JumpHash(names).get_node,
        "RendezvousHash": RendezvousHash(names).get_node,
        "MaglevHash": MaglevHash(names, table_size=5003).get_node,
        "BoundedLoadBalancer(1.25)": BoundedLoadBalancer(names, load_factor=1.25).acquire,
    }
    rows = []
    for label, get in lookups.items():
        counts = Counter(get(k) for k in keys)
        peak = max(counts.values()) / (len(keys) / len(names))
        rows.append([label, *(counts[n] for n in names), f"{peak:.3f}"])
    out.table(["algorithm", *names, "peak/mean"], rows)
    out.line("Plan a resize yourself: dsprims ring --before a,b,c --after a,b,c,d")
