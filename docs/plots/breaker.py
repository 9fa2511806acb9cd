"""Timeline of a scripted incident for docs/breaker.md (writes docs/img/breaker-timeline.png).

Run: ``.venv/bin/python docs/plots/breaker.py``. The incident runs on a ManualClock, so the
picture is exactly reproducible: a dependency fails from t=20 s to t=75 s while a client calls it
every 0.5 s through a breaker (count window of 10, 50 % threshold, exponential open duration).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dsprims import BreakerState, CircuitBreaker, CircuitOpenError, ManualClock

OUT = Path(__file__).resolve().parent.parent / "img" / "breaker-timeline.png"
LEVEL = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


def main() -> None:
    clock = ManualClock(start=0.0)
    breaker = CircuitBreaker(
        "inventory",
        minimum_calls=10,
        window_size=10,
        open_duration=4.0,
        open_duration_multiplier=2.0,
        max_open_duration=30.0,
        clock=clock,
    )
    times: list[float] = []
    states: list[int] = []
    outcome_t: dict[str, list[float]] = {"ok": [], "failed": [], "rejected": []}

    def dependency() -> str:
        if 20.0 <= clock.monotonic() < 75.0:
            raise ConnectionError("inventory service down")
        return "ok"

    trials: list[float] = []
    breaker.on_state_change(
        lambda e: trials.append(e.at) if e.to_state is BreakerState.HALF_OPEN else None
    )
    while clock.monotonic() < 110.0:
        now = clock.monotonic()
        try:
            breaker.call(dependency)
            outcome_t["ok"].append(now)
        except CircuitOpenError:
            outcome_t["rejected"].append(now)
        except ConnectionError:
            outcome_t["failed"].append(now)
        times.append(now)
        states.append(LEVEL[breaker.state])
        clock.advance(0.5)

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 4.2), sharex=True, height_ratios=[2, 1])
    ax1.step(times, states, where="post", color="#333")
    ax1.set_yticks([0, 1, 2], ["CLOSED", "HALF_OPEN", "OPEN"])
    ax1.plot(trials, [1] * len(trials), "o", color="#e9c46a", label="half-open trial")
    ax1.axvspan(20, 75, color="#f4cccc", label="dependency down")
    ax1.legend(loc="center right")
    ax1.set_title("Scripted incident: open periods 4, 8, 16, 30 s (capped), then recovery")
    for row, (label, color) in enumerate(
        [("ok", "#2a9d8f"), ("failed", "#e63946"), ("rejected", "#999999")]
    ):
        ax2.plot(outcome_t[label], [row] * len(outcome_t[label]), "|", color=color, ms=9)
    ax2.set_yticks([0, 1, 2], ["ok", "failed", "rejected"])
    ax2.set_xlabel("time (s, ManualClock)")
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=100)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
