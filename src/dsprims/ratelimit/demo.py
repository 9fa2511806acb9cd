"""Demo section: the three rate limiters, a composite, and what a denial tells the caller."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dsprims.backends.url import backend_from_url
from dsprims.ratelimit.composite import CompositeLimiter
from dsprims.ratelimit.limiters import SlidingWindowCounter, SlidingWindowLog, TokenBucket
from dsprims.testing.clock import ManualClock

if TYPE_CHECKING:
    from dsprims.cli import DemoOptions, DemoOutput

TITLE = "Rate limiting: token bucket, exact sliding log, sliding-window counter"


def run(out: DemoOutput, options: DemoOptions) -> None:
    """Offer the same burst to each limiter, then show retry_after, headers and a composite."""
    backend = backend_from_url(options.backend_url)
    clock = ManualClock(start=1000.0)  # virtual time: the demo is instant and reproducible
    try:
        makers: list[tuple[str, Callable[[ManualClock], Any]]] = [
            (
                "TokenBucket(rate=5, capacity=5)",
                lambda c: TokenBucket(5, 5, backend=backend, clock=c, pinned_ttl_grace=60.0),
            ),
            (
                "SlidingWindowLog(5, 1.0)",
                lambda c: SlidingWindowLog(5, 1.0, backend=backend, clock=c, pinned_ttl_grace=60.0),
            ),
            (
                "SlidingWindowCounter(5, 1.0)",
                lambda c: SlidingWindowCounter(
                    5, 1.0, backend=backend, clock=c, pinned_ttl_grace=60.0
                ),
            ),
        ]
        out.line(f"20 requests in 2 s (one every 100 ms) against each limiter, on {backend!r}:")
        rows = []
        for label, make in makers:
            own_clock = ManualClock(start=1000.0)
            limiter = make(own_clock)
            limiter.reset("demo-user")
            pattern = ""
            for i in range(20):
                own_clock.set(1000.0 + i * 0.1)
                pattern += "#" if limiter.try_acquire("demo-user").allowed else "."
            rows.append([label, pattern, pattern.count("#")])
        out.table(["limiter", "admitted (#) / denied (.)", "admitted"], rows)

        bucket = TokenBucket(
            2, 2, backend=backend, clock=clock, pinned_ttl_grace=60.0, name="demo-headers"
        )
        bucket.reset("alice")
        bucket.try_acquire("alice", 2)
        denied = bucket.try_acquire("alice")
        out.bad(f"denied: retry_after={denied.retry_after:.6f}s  headers={denied.headers()}")
        clock.advance(denied.retry_after)
        out.good(
            f"after waiting exactly retry_after: allowed={bucket.try_acquire('alice').allowed}"
        )

        both = CompositeLimiter(
            [
                TokenBucket(
                    1, 3, backend=backend, clock=clock, pinned_ttl_grace=60.0, name="demo-user"
                ),
                SlidingWindowLog(
                    4, 60.0, backend=backend, clock=clock, pinned_ttl_grace=60.0, name="demo-minute"
                ),
            ]
        )
        both.reset("bob")
        results = "".join("#" if both.try_acquire("bob").allowed else "." for _ in range(5))
        left = both.limiters[1].peek("bob").remaining
        out.line(f"composite (3 burst AND 4 per minute), 5 requests: {results}")
        out.good(f"denials consumed nothing: the per-minute log still has {left} left")
    finally:
        backend.close()
