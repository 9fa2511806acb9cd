"""Demo section: a circuit breaker through a scripted outage, and exact half-open permits."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from dsprims.breaker.breaker import CircuitBreaker
from dsprims.breaker.core import BreakerState
from dsprims.errors import CircuitOpenError
from dsprims.testing.clock import ManualClock

if TYPE_CHECKING:
    from dsprims.cli import DemoOptions, DemoOutput

TITLE = "Circuit breaker: trip, reject, trial, close"


def run(out: DemoOutput, options: DemoOptions) -> None:
    """Walk a breaker through an outage on a virtual clock, then race 16 threads in half-open."""
    clock = ManualClock()
    breaker = CircuitBreaker(
        "inventory",
        minimum_calls=4,
        window_size=10,
        open_duration=2.0,
        open_duration_multiplier=2.0,
        clock=clock,
    )
    breaker.on_state_change(
        lambda e: out.line(
            f"  t={e.at:5.1f}s  {e.from_state.name} -> {e.to_state.name}  ({e.reason})"
        )
    )
    down = True

    def dependency() -> str:
        if down:
            raise ConnectionError("inventory down")
        return "ok"

    out.line("The dependency fails; calls every 0.5 s of virtual time:")
    for step in range(36):
        if step == 18:
            down = False
            out.line("  ... the dependency recovers")
        try:
            breaker.call(dependency)
        except CircuitOpenError:
            pass
        except ConnectionError:
            pass
        clock.advance(0.5)
    m = breaker.metrics()
    out.good(f"state {m.state.name}; {m.not_permitted_calls} calls were rejected without waiting")

    out.line("16 threads race for 2 half-open permits:")
    racer = CircuitBreaker("race", half_open_calls=2)
    racer.transition_to_half_open()
    gate = threading.Barrier(16)
    release = threading.Event()
    admitted: list[int] = []
    rejected: list[int] = []

    def trial(n: int) -> None:
        admitted.append(n)
        release.wait(5)

    def worker(n: int) -> None:
        gate.wait()
        try:
            racer.call(trial, n)
        except CircuitOpenError:
            rejected.append(n)
        if len(rejected) == 14:
            release.set()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    if len(admitted) == 2 and racer.state is BreakerState.CLOSED:
        out.good(f"exactly 2 trials ran (threads {sorted(admitted)}), 14 were rejected; closed")
    else:
        out.bad(f"{len(admitted)} trials ran")
    if options.backend_url.startswith(("redis://", "rediss://")):
        _fleet(out, options.backend_url)
    else:
        out.line("(run with --backend redis://... to see two breakers share one state)")


def _fleet(out: DemoOutput, url: str) -> None:
    import contextlib
    import time
    import uuid

    out.line("Fleet mode: two breakers (think: two processes) share one state on Redis.")
    prefix = f"demo-{uuid.uuid4().hex[:8]}"
    a, b = (
        CircuitBreaker(
            "checkout", backend=url, prefix=prefix, minimum_calls=2, window_size=2, open_duration=5
        )
        for _ in range(2)
    )
    try:
        seen = threading.Event()
        b.on_state_change(lambda e: seen.set() if e.to_state is BreakerState.OPEN else None)
        with contextlib.suppress(ConnectionError):
            a.call(_fail)
        started = time.perf_counter()
        with contextlib.suppress(ConnectionError):
            a.call(_fail)  # trips: one compare-and-set on Redis, published to b
        if seen.wait(5):
            lag = (time.perf_counter() - started) * 1000
            out.good(f"a tripped; b knew within {lag:.2f} ms of a's failing call (pub/sub push)")
        try:
            b.call(lambda: "ok")
            out.bad("b let a call through")
        except CircuitOpenError as exc:
            out.good(f"b rejects too, retry after {exc.retry_after:.2f} s (server clock)")
    finally:
        a.reset()
        a.close()
        b.close()


def _fail() -> None:
    raise ConnectionError("checkout down")
