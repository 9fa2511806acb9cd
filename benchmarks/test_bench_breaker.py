"""Circuit breaker overhead against pybreaker, circuitbreaker and aiobreaker.

Goals (issue 5), read as the largest acceptable ``ours / this`` ratio:

* a successful protected call costs <= 0.35x pybreaker's and <= 0.7x circuitbreaker's (which
  takes no lock at all); async likewise against aiobreaker;
* a rejection while OPEN costs <= 0.3x pybreaker's rejection.

Every row runs the whole protected call of a function that returns at once, so the numbers are
the breakers' overheads plus one bare call (the "floor" row). Sync rows time 100 calls per
round and report the mean per call, so the timer's own cost does not blur the ratios, and
exceptions are caught with try/except (``contextlib.suppress`` would cost more than a
rejection). Two extra groups show the costs off the fastest path: a window that holds
failures (every success takes the lock and updates the ring) and a time window (every call
also reads the clock). Fleet mode on Redis is compared
with pybreaker's Redis storage: a successful call in CLOSED costs no round trip.
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
from typing import Any

import aiobreaker
import circuitbreaker
import pybreaker

from dsprims import AsyncCircuitBreaker, CircuitBreaker, CircuitOpenError

ASYNC_BATCH = 200  # awaited calls per benchmark round, so the event loop's cost is amortised
ITERATIONS = 100  # sync calls per timed round: a call costs about as much as reading the timer


def _run(
    benchmark: Any, fn: Any, *args: Any, iterations: int = ITERATIONS, rounds: int = 400
) -> None:
    # pedantic with iterations: the timer is read once per 100 calls and the mean divided, so
    # the timer's own cost (which would be added to every row alike) does not compress ratios.
    benchmark.pedantic(fn, args=args, iterations=iterations, rounds=rounds, warmup_rounds=5)


def work() -> int:
    return 1


async def awork() -> int:
    return 1


# -- successful call, call(fn) style -----------------------------------------------------------

CALL = "breaker: successful call, breaker.call(fn)"


def test_call_ours(mark: Any) -> None:
    b = CircuitBreaker("bench")
    _run(mark(CALL, "ours", "dsprims CircuitBreaker.call"), b.call, work)


def test_call_pybreaker(mark: Any) -> None:
    b = pybreaker.CircuitBreaker(fail_max=5)
    _run(mark(CALL, "peer", "pybreaker call", goal=0.35), b.call, work)


def test_call_floor(mark: Any) -> None:
    _run(mark(CALL, "floor", "bare call"), work)


# -- successful call, decorator style ----------------------------------------------------------

DECO = "breaker: successful call, decorated function"


def test_deco_ours(mark: Any) -> None:
    fn = CircuitBreaker("bench")(work)
    _run(mark(DECO, "ours", "dsprims @CircuitBreaker"), fn)


def test_deco_circuitbreaker(mark: Any) -> None:
    fn = circuitbreaker.CircuitBreaker(failure_threshold=5)(work)
    _run(mark(DECO, "peer", "circuitbreaker @circuit (no locks)", goal=0.7), fn)


def test_deco_pybreaker(mark: Any) -> None:
    fn = pybreaker.CircuitBreaker(fail_max=5)(work)
    _run(mark(DECO, "peer", "pybreaker @breaker", goal=0.35), fn)


# -- successful call while the window holds failures -------------------------------------------

MIXED = "breaker: successful call, window holding failures (ring update under the lock)"


def test_mixed_ours(mark: Any) -> None:
    b = CircuitBreaker("bench", failure_rate_threshold=1.0, minimum_calls=100)
    for _ in range(3):
        permit = b.try_acquire()
        permit.failure()  # three failures stay in the window of 100 for 97 more calls...
    calls = 0

    def run() -> int:
        nonlocal calls
        calls += 1
        if calls % 50 == 0:  # ...and one more every 50 keeps it from ever being clean
            b.try_acquire().failure()
        return b.call(work)

    _run(mark(MIXED, "ours", "dsprims call (+1 failure per 50)"), run)


def test_mixed_pybreaker(mark: Any) -> None:
    b = pybreaker.CircuitBreaker(fail_max=10**9)
    calls = 0

    def fail() -> None:
        raise ValueError

    def run() -> int:
        nonlocal calls
        calls += 1
        if calls % 50 == 0:
            try:  # noqa: SIM105 - contextlib.suppress costs more than what is measured
                b.call(fail)
            except ValueError:
                pass
        return int(b.call(work))

    _run(mark(MIXED, "peer", "pybreaker call (+1 failure per 50)", goal=0.35), run)


TIMEWIN = "breaker: successful call, 60 s time window"


def test_time_window_ours(mark: Any) -> None:
    b = CircuitBreaker("bench", window_type="time", window_size=60)
    _run(mark(TIMEWIN, "ours", "dsprims call, time window"), b.call, work)


def test_time_window_pybreaker(mark: Any) -> None:
    b = pybreaker.CircuitBreaker(fail_max=5)
    _run(mark(TIMEWIN, "peer", "pybreaker call", goal=0.35), b.call, work)


# -- rejection while OPEN ------------------------------------------------------------------------

REJECT = "breaker: rejection while OPEN"


def test_reject_ours(mark: Any) -> None:
    b = CircuitBreaker("bench")
    b.transition_to_open()

    def run() -> None:
        try:  # noqa: SIM105 - contextlib.suppress costs more than what is measured
            b.call(work)
        except CircuitOpenError:
            pass

    _run(mark(REJECT, "ours", "dsprims CircuitOpenError"), run)


def test_reject_pybreaker(mark: Any) -> None:
    b = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=3600)
    b.open()

    def run() -> None:
        try:  # noqa: SIM105 - contextlib.suppress costs more than what is measured
            b.call(work)
        except pybreaker.CircuitBreakerError:
            pass

    _run(mark(REJECT, "peer", "pybreaker CircuitBreakerError", goal=0.3), run)


def test_reject_circuitbreaker(mark: Any) -> None:
    cb = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=3600)

    def fail() -> None:
        raise ValueError

    guarded = cb(fail)
    try:  # noqa: SIM105 - contextlib.suppress costs more than what is measured
        guarded()
    except ValueError:
        pass
    fn = cb(work)

    def run() -> None:
        try:  # noqa: SIM105 - contextlib.suppress costs more than what is measured
            fn()
        except circuitbreaker.CircuitBreakerError:
            pass

    _run(mark(REJECT, "peer", "circuitbreaker CircuitBreakerError"), run)


# -- asyncio -------------------------------------------------------------------------------------

ASYNC = f"breaker: successful async call ({ASYNC_BATCH} awaited calls per round)"


def _async_bench(benchmark: Any, call: Any) -> None:
    loop = asyncio.new_event_loop()

    async def batch() -> None:
        for _ in range(ASYNC_BATCH):
            await call()

    try:
        benchmark(lambda: loop.run_until_complete(batch()))
    finally:
        loop.close()


def test_async_ours(mark: Any) -> None:
    fn = AsyncCircuitBreaker("bench")(awork)
    _async_bench(mark(ASYNC, "ours", "dsprims @AsyncCircuitBreaker"), fn)


def test_async_aiobreaker(mark: Any) -> None:
    b = aiobreaker.CircuitBreaker(fail_max=5)
    fn = b(awork)
    _async_bench(mark(ASYNC, "peer", "aiobreaker @breaker", goal=0.35), fn)


def test_async_floor(mark: Any) -> None:
    _async_bench(mark(ASYNC, "floor", "bare await"), awork)


AREJECT = f"breaker: async rejection while OPEN ({ASYNC_BATCH} per round)"


def test_async_reject_ours(mark: Any) -> None:
    b = AsyncCircuitBreaker("bench")
    asyncio.run(b.transition_to_open())

    async def run() -> None:
        try:  # noqa: SIM105 - contextlib.suppress costs more than what is measured
            await b.call(awork)
        except CircuitOpenError:
            pass

    _async_bench(mark(AREJECT, "ours", "dsprims CircuitOpenError"), run)


def test_async_reject_aiobreaker(mark: Any) -> None:
    b = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=datetime.timedelta(hours=1))
    b.open()

    async def run() -> None:
        try:  # noqa: SIM105 - contextlib.suppress costs more than what is measured
            await b.call_async(awork)
        except aiobreaker.CircuitBreakerError:
            pass

    _async_bench(mark(AREJECT, "peer", "aiobreaker CircuitBreakerError", goal=0.3), run)


# -- fleet mode on Redis ---------------------------------------------------------------------------

FLEET = "breaker: successful call with shared state on Redis"


def test_fleet_ours(redis_server: Any, mark: Any) -> None:
    b = CircuitBreaker("bench", backend=redis_server.url, prefix=f"bench-{uuid.uuid4().hex}")
    try:
        _run(mark(FLEET, "ours", "dsprims fleet mode (local window)"), b.call, work)
    finally:
        b.close()


def test_fleet_pybreaker(redis_server: Any, mark: Any) -> None:
    client = redis_server.client()
    storage = pybreaker.CircuitRedisStorage(
        pybreaker.STATE_CLOSED, client, namespace=f"bench-{uuid.uuid4().hex}"
    )
    b = pybreaker.CircuitBreaker(fail_max=5, state_storage=storage)
    try:
        _run(
            mark(FLEET, "peer", "pybreaker CircuitRedisStorage"),
            b.call,
            work,
            iterations=10,
            rounds=40,
        )
    finally:
        client.close()
