"""Plot each rate limiter's admissions over time under the same offered load.

Run: ``.venv/bin/python docs/plots/ratelimit.py`` (writes ``docs/img/ratelimit-*.png``).
Time is virtual (ManualClock), so the pictures are exact and reproducible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dsprims import (
    ManualClock,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
)

OUT = Path(__file__).resolve().parent.parent / "img"
DURATION = 6.0
STEP = 0.01  # a request offered every 10 ms (100/s) during the busy phases


def offered(t: float) -> bool:
    """Busy 0-1.5 s, idle 1.5-3 s, busy 3-6 s."""
    return t < 1.5 or t >= 3.0


def simulate(make: Any) -> tuple[list[int], list[int]]:
    """Offer the load; return the admitted and denied instants as whole 10 ms steps."""
    clock = ManualClock(start=0.0)
    limiter = make(clock)
    admitted, denied = [], []
    for i in range(round(DURATION / STEP)):
        clock.set(i * STEP)
        if offered(i * STEP):
            (admitted if limiter.try_acquire("k").allowed else denied).append(i)
    return admitted, denied


def main() -> None:
    OUT.mkdir(exist_ok=True)
    algorithms = [
        ("TokenBucket(rate=10, capacity=10)", lambda c: TokenBucket(10, 10, clock=c)),
        ("SlidingWindowLog(limit=10, window=1.0)", lambda c: SlidingWindowLog(10, 1.0, clock=c)),
        (
            "SlidingWindowCounter(limit=10, window=1.0)",
            lambda c: SlidingWindowCounter(10, 1.0, clock=c),
        ),
    ]
    fig, axes = plt.subplots(len(algorithms), 1, figsize=(9, 7.5), sharex=True)
    for ax, (title, make) in zip(axes, algorithms, strict=True):
        admitted, denied = simulate(make)
        steps = round(DURATION / STEP)
        ax.eventplot([[a * STEP for a in admitted]], colors="tab:green", linelengths=0.8)
        ax.eventplot(
            [[d * STEP for d in denied]], colors="tab:red", lineoffsets=0, linelengths=0.8,
            alpha=0.25,
        )  # fmt: skip
        # admissions in the window (t - 1 s, t], counted on the integer step grid
        counts = [sum(1 for a in admitted if i - 100 < a <= i) for i in range(steps)]
        twin = ax.twinx()
        twin.plot([i * STEP for i in range(steps)], counts, color="tab:blue", lw=1.2)
        twin.axhline(10, color="tab:blue", ls=":", lw=0.8)
        twin.set_ylim(0, 22)
        twin.set_ylabel("admitted in\nlast 1 s", color="tab:blue")
        ax.set_yticks([0, 1], ["denied", "admitted"])
        ax.set_ylim(-0.6, 1.6)
        ax.set_title(f"{title}: {len(admitted)} admitted of {len(admitted) + len(denied)}")
    axes[-1].set_xlabel("time (s); 100 requests/s offered during 0-1.5 s and 3-6 s")
    fig.tight_layout()
    fig.savefig(OUT / "ratelimit-admissions.png", dpi=90)
    print(f"wrote {OUT / 'ratelimit-admissions.png'}")


if __name__ == "__main__":
    main()
