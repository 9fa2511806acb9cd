"""Draw docs/img/locks-pause.png: the pause scenario, with the tokens dsprims really issues.

Two MemoryLock holders and a FencedStore on one ManualClock: A is paused past its lease, B
acquires and writes, A resumes, finds ``lease.lost`` and its late write is refused. Every
token, verdict and time in the picture comes from running that script.
Run: .venv/bin/python docs/plots/locks.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dsprims import FencedStore, ManualClock, MemoryBackend, MemoryLock, StaleTokenError

OUT = Path(__file__).resolve().parent.parent / "img" / "locks-pause.png"
LANES = ["holder A", "lock store", "holder B", "resource\n(FencedStore)"]

clock = ManualClock(start=0.0)
backend = MemoryBackend()
store = FencedStore("files", backend=backend)
lock = MemoryLock("report", backend=backend, clock=clock, ttl=10.0, auto_renew=False)

arrows: list[tuple[float, int, int, str, str]] = []  # (t, from, to, label, color)
notes: list[tuple[float, int, str, str]] = []  # (t, lane, text, color)

a = lock.acquire()
arrows.append((0.0, 0, 1, "acquire", "#4477aa"))
arrows.append((1.0, 1, 0, f"token {a.token}", "#4477aa"))
notes.append((1.8, 0, "paused (GC, SIGSTOP, VM stop)", "#aa3377"))
clock.advance(10.0)
notes.append((10.0, 1, "A's lease ends", "#666666"))
clock.advance(2.0)
b = lock.acquire(timeout=0)
arrows.append((12.0, 2, 1, "acquire", "#228833"))
arrows.append((13.0, 1, 2, f"token {b.token}", "#228833"))
store.write("report", "B", b.token)
arrows.append((14.0, 2, 3, f"write(token {b.token})", "#228833"))
notes.append((14.6, 3, f"ok, highest = {b.token}", "#228833"))
clock.advance(6.0)
lost = a.lost
notes.append((18.0, 0, f"resumes: lease.lost = {lost}", "#aa3377"))
try:
    store.write("report", "A", a.token)
    verdict = "accepted (!)"
except StaleTokenError:
    verdict = "StaleTokenError"
arrows.append((19.5, 0, 3, f"write(token {a.token})", "#cc6677"))
notes.append((20.1, 3, verdict, "#cc6677"))
b.release()

fig, ax = plt.subplots(figsize=(10, 5.6), dpi=110)
xs = [0, 1.6, 3.2, 4.8]
for lane, name in enumerate(LANES):
    ax.plot([xs[lane], xs[lane]], [-0.8, 21.5], color="#bbbbbb", linewidth=1, zorder=0)
    ax.text(xs[lane], -1.2, name, ha="center", va="bottom", fontsize=10, weight="bold")
ax.add_patch(plt.Rectangle((xs[0] - 0.08, 1.5), 0.16, 16.5, color="#aa3377", alpha=0.18, zorder=1))
for t, src, dst, label, color in arrows:
    ax.annotate(
        "",
        xy=(xs[dst], t),
        xytext=(xs[src], t),
        arrowprops={"arrowstyle": "->", "color": color, "linewidth": 1.5},
    )
    ax.text((xs[src] + xs[dst]) / 2, t - 0.15, label, ha="center", va="bottom", fontsize=8.5)
for t, lane, text, color in notes:
    ax.text(xs[lane] + 0.1, t, text, ha="left", va="center", fontsize=8.5, color=color)
ax.set_xlim(-0.6, 6.6)
ax.set_ylim(21.8, -1.6)
ax.set_ylabel("time (s)")
ax.set_xticks([])
for side in ("top", "right", "bottom"):
    ax.spines[side].set_visible(False)
ax.set_title("A holder paused past its lease: fencing tokens stop its late write", pad=30)
fig.tight_layout()
OUT.parent.mkdir(parents=True, exist_ok=True)
fig.savefig(OUT)
print(f"wrote {OUT}")
