"""Run the pure cores over a sequence of steps, keeping state the way the memory backend does."""

from __future__ import annotations

from typing import Any

from dsprims.ratelimit.core import (
    CounterParams,
    CounterState,
    LogParams,
    TokenBucketParams,
    counter_decide,
    gcra_decide,
    log_decide,
)

Verdict = tuple[int, int, int, int]


class CoreRunner:
    """One key's state for one algorithm, driven through the pure core."""

    def __init__(self, algo: str, params: dict[str, Any]) -> None:
        self.algo = algo
        self.tat: int | None = None
        self.counter: CounterState | None = None
        self.times: list[int] = []
        self.costs: list[int] = []
        self.total = 0
        if algo == "token_bucket":
            self.tb = TokenBucketParams(**params)
        elif algo == "counter":
            self.cp = CounterParams(**params)
        else:
            self.lp = LogParams(**params)

    def step(self, now: int, cost: int, consume: bool) -> Verdict:
        if self.algo == "token_bucket":
            tat = now if self.tat is None else self.tat
            a, r, ra, re, new = gcra_decide(
                self.tb.interval_us, self.tb.tolerance_us, tat, now, cost, consume
            )
            if a and consume:
                self.tat = new
            return int(a), r, ra, re
        if self.algo == "counter":
            verdict, state = counter_decide(self.cp, self.counter, now, cost, consume)
            if verdict[0] and consume and cost:
                self.counter = state
            return int(verdict[0]), verdict[1], verdict[2], verdict[3]
        verdict, update = log_decide(
            self.lp, self.times, self.costs, self.total, now, cost, consume
        )
        del self.times[: update.expired]
        del self.costs[: update.expired]
        self.total = update.total
        if update.append:
            if self.times and self.times[-1] == update.at:
                self.costs[-1] += update.append
            else:
                self.times.append(update.at)
                self.costs.append(update.append)
        return int(verdict[0]), verdict[1], verdict[2], verdict[3]
