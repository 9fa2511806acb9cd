"""Draw docs/img/clocks-sequence.png: a message sequence with the timestamps dsprims assigns.

Three nodes whose physical clocks disagree (node A runs 8 ns ahead); every event is stamped by
a real HybridLogicalClock, VectorClockNode and LamportClock driven by ManualClocks.
Run: .venv/bin/python docs/plots/clocks.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dsprims import HybridLogicalClock, LamportClock, ManualClock, VectorClockNode

OUT = Path(__file__).resolve().parent.parent / "img" / "clocks-sequence.png"
NAMES = ["A", "B", "C"]
OFFSETS = [8, 0, 2]  # ns each node's physical clock reads ahead of true time

clocks = [ManualClock() for _ in NAMES]
hlcs = [HybridLogicalClock(clock=c, max_offset=0) for c in clocks]
vcs = [VectorClockNode(n) for n in NAMES]
lamports = [LamportClock() for _ in NAMES]

# (true time, node, kind, message id): a send creates the message, a recv consumes it.
SCRIPT = [
    (2, 0, "send", "m1"),
    (3, 1, "local", None),
    (5, 1, "recv", "m1"),
    (6, 2, "local", None),
    (7, 1, "send", "m2"),
    (8, 0, "local", None),
    (9, 2, "recv", "m2"),
    (12, 2, "send", "m3"),
    (14, 0, "recv", "m3"),
]

events = []
sent: dict[str, tuple[int, int, object, object, int]] = {}
for true_time, node, kind, msg in SCRIPT:
    pt = true_time + OFFSETS[node]
    clocks[node].set_wall_ns(pt)
    if kind == "recv":
        assert msg is not None
        _, _, h, v, lam = sent[msg]
        stamp = hlcs[node].update(h)  # type: ignore[arg-type]
        vector = vcs[node].receive(v)  # type: ignore[arg-type]
        lamport = lamports[node].receive(lam)
    else:
        stamp = hlcs[node].now()
        vector = vcs[node].tick()
        lamport = lamports[node].tick()
    if kind == "send":
        assert msg is not None
        sent[msg] = (true_time, node, stamp, vector, lamport)
    events.append((true_time, node, kind, msg, pt, stamp, vector, lamport))

fig, ax = plt.subplots(figsize=(11, 4.6), dpi=110)
for row, name in enumerate(NAMES):
    ax.axhline(row, color="#bbbbbb", linewidth=1, zorder=0)
    ax.text(0.3, row, f"{name}\n(+{OFFSETS[row]} ns)", ha="right", va="center", fontsize=10)
for msg, (t0, n0, *_rest) in sent.items():
    t1, n1 = next((e[0], e[1]) for e in events if e[2] == "recv" and e[3] == msg)
    ax.annotate(
        "",
        xy=(t1, n1),
        xytext=(t0, n0),
        arrowprops={"arrowstyle": "->", "color": "#4477aa", "linewidth": 1.4},
    )
    ax.text((t0 + t1) / 2 + 0.15, (n0 + n1) / 2, msg, color="#4477aa", fontsize=9)
for true_time, node, kind, _msg, pt, stamp, vector, lamport in events:
    color = {"send": "#4477aa", "recv": "#228833", "local": "#666666"}[kind]
    ax.plot(true_time, node, "o", color=color, markersize=7, zorder=3)
    compact = " ".join(f"{n}{c}" for n, c in vector.items())
    label = f"pt={pt}\nHLC ({stamp.wall_ns},{stamp.logical})\nVC {compact}\nL={lamport}"
    ax.text(true_time, node + 0.1, label, ha="center", va="top", fontsize=7, family="monospace")
ax.set_xlim(-0.5, 15.5)
ax.set_ylim(3.0, -0.4)
ax.set_xlabel("true time (ns); pt = the node's own physical clock")
ax.set_yticks([])
for side in ("top", "right", "left"):
    ax.spines[side].set_visible(False)
ax.set_title("Timestamps of one message sequence: HLC (wall, logical), vector clock, Lamport")
fig.tight_layout()
OUT.parent.mkdir(parents=True, exist_ok=True)
fig.savefig(OUT)
print(f"wrote {OUT}")
