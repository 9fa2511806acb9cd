"""Circuit breaker overhead against pybreaker, circuitbreaker and aiobreaker.

Goals (issue 5), read as the largest acceptable ``ours / this`` ratio:

* a successful protected call costs <= 0.35x pybreaker's and <= 0.7x circuitbreaker's (which
  takes no lock at all); async likewise against aiobreaker;
* a rejection while OPEN costs <= 0.3x pybreaker's rejection.

Every row runs the whole protected call of a function that returns at once, so the numbers are
the breakers' overheads plus one bare call (the "floor" row). Goal groups run interleaved
(``compare``), and exceptions are caught with try/except (``contextlib.suppress`` would cost
more than a rejection). Two extra groups show the costs off the fastest path: a window that
holds failures (every success takes the lock and updates the ring) and a time window (every
call also reads the clock). Fleet mode on Redis is compared with pybreaker's Redis storage: a
successful call in CLOSED costs no round trip.
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
from functools import partial
from typing import Any

import aiobreaker
import circuitbreaker
import pybreaker

from benchmarks.conftest import Contender
from dsprims import AsyncCircuitBreaker, CircuitBreaker, CircuitOpenError

# Every group with a goal runs its rows interleaved (the ``compare`` fixture: alternating
# batches of back-to-back calls; ratios are medians of per-round ratios), so the machine's load
# hits every row alike. A row calling ``b.call(work)`` is a ``functools.partial`` (C code: no
# extra frame on either side).


def work() -> int:
    return 1


async def awork() -> int:
    return 1


# -- successful call, call(fn) style -----------------------------------------------------------

CALL = "breaker: successful call, breaker.call(fn)"


def test_call(compare: Any) -> None:
    ours = CircuitBreaker("bench")
    peer = pybreaker.CircuitBreaker(fail_max=5)
    compare(
        CALL,
        [
            Contender("ours", "dsprims CircuitBreaker.call", partial(ours.call, work)),
            Contender("peer", "pybreaker call", partial(peer.call, work), goal=0.35),
            Contender("floor", "bare call", work),
        ],
    )


# -- successful call, decorator style ----------------------------------------------------------

DECO = "breaker: successful call, decorated function"


def test_deco(compare: Any) -> None:
    compare(
        DECO,
        [
            Contender("ours", "dsprims @CircuitBreaker", CircuitBreaker("bench")(work)),
            Contender(
                "peer",
                "circuitbreaker @circuit (no locks)",
                circuitbreaker.CircuitBreaker(failure_threshold=5)(work),
                goal=0.7,
            ),
            Contender(
                "peer",
                "pybreaker @breaker",
                pybreaker.CircuitBreaker(fail_max=5)(work),
                goal=0.35,
            ),
        ],
    )


# -- successful call while the window holds failures -------------------------------------------

MIXED = "breaker: successful call, window holding failures (ring update under the lock)"


def _mixed_ours() -> Any:
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

    return run


def _mixed_pybreaker() -> Any:
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

    return run


def test_mixed(compare: Any) -> None:
    compare(
        MIXED,
        [
            Contender("ours", "dsprims call (+1 failure per 50)", _mixed_ours()),
            Contender("peer", "pybreaker call (+1 failure per 50)", _mixed_pybreaker(), 0.35),
        ],
    )


TIMEWIN = "breaker: successful call, 60 s time window"


def test_time_window(compare: Any) -> None:
    ours = CircuitBreaker("bench", window_type="time", window_size=60)
    peer = pybreaker.CircuitBreaker(fail_max=5)
    compare(
        TIMEWIN,
        [
            Contender("ours", "dsprims call, time window", partial(ours.call, work)),
            Contender("peer", "pybreaker call", partial(peer.call, work), goal=0.35),
        ],
    )


# -- rejection while OPEN ------------------------------------------------------------------------

REJECT = "breaker: rejection while OPEN"


def _reject(call: Any, error: type[BaseException]) -> Any:
    def run() -> None:
        try:  # noqa: SIM105 - contextlib.suppress costs more than what is measured
            call(work)
        except error:
            pass

    return run


def test_reject(compare: Any) -> None:
    ours = CircuitBreaker("bench")
    ours.transition_to_open()
    peer = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=3600)
    peer.open()
    cb = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=3600)

    def fail() -> None:
        raise ValueError

    try:  # noqa: SIM105 - contextlib.suppress costs more than what is measured
        cb(fail)()
    except ValueError:
        pass
    guarded = cb(work)

    def cb_run() -> None:
        try:  # noqa: SIM105 - contextlib.suppress costs more than what is measured
            guarded()
        except circuitbreaker.CircuitBreakerError:
            pass

    compare(
        REJECT,
        [
            Contender("ours", "dsprims CircuitOpenError", _reject(ours.call, CircuitOpenError)),
            Contender(
                "peer",
                "pybreaker CircuitBreakerError",
                _reject(peer.call, pybreaker.CircuitBreakerError),
                goal=0.3,
            ),
            Contender("peer", "circuitbreaker CircuitBreakerError", cb_run),
        ],
    )


# -- asyncio -------------------------------------------------------------------------------------

ASYNC = "breaker: successful async call"


def test_async(compare: Any) -> None:
    loop = asyncio.new_event_loop()
    try:
        compare(
            ASYNC,
            [
                Contender("ours", "dsprims @AsyncCircuitBreaker", AsyncCircuitBreaker("b")(awork)),
                Contender(
                    "peer",
                    "aiobreaker @breaker",
                    aiobreaker.CircuitBreaker(fail_max=5)(awork),
                    goal=0.35,
                ),
                Contender("floor", "bare await", awork),
            ],
            loop=loop,
        )
    finally:
        loop.close()


AREJECT = "breaker: async rejection while OPEN"


def test_async_reject(compare: Any) -> None:
    ours = AsyncCircuitBreaker("bench")
    peer = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=datetime.timedelta(hours=1))
    peer.open()

    async def run_ours() -> None:
        try:  # noqa: SIM105 - contextlib.suppress costs more than what is measured
            await ours.call(awork)
        except CircuitOpenError:
            pass

    async def run_peer() -> None:
        try:  # noqa: SIM105 - contextlib.suppress costs more than what is measured
            await peer.call_async(awork)
        except aiobreaker.CircuitBreakerError:
            pass

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(ours.transition_to_open())
        compare(
            AREJECT,
            [
                Contender("ours", "dsprims CircuitOpenError", run_ours),
                Contender("peer", "aiobreaker CircuitBreakerError", run_peer, goal=0.3),
            ],
            loop=loop,
        )
    finally:
        loop.close()


# -- fleet mode on Redis ---------------------------------------------------------------------------

FLEET = "breaker: successful call with shared state on Redis"
ITERATIONS = 100  # calls per timed round: a call costs about as much as reading the timer


def _run(
    benchmark: Any, fn: Any, *args: Any, iterations: int = ITERATIONS, rounds: int = 400
) -> None:
    # pedantic with iterations: the timer is read once per 100 calls and the mean divided, so
    # the timer's own cost (which would be added to every row alike) does not compress ratios.
    benchmark.pedantic(fn, args=args, iterations=iterations, rounds=rounds, warmup_rounds=5)


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
