"""Scripted incidents under ManualClock: the exact sequence of transitions is asserted."""

from __future__ import annotations

from typing import Any

import pytest

from dsprims import (
    AsyncCircuitBreaker,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    ManualClock,
    StateChangeEvent,
)

CL, OP, HO = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def state_of(breaker: CircuitBreaker | AsyncCircuitBreaker) -> BreakerState:
    # A call, not an attribute: mypy would otherwise narrow ``breaker.state`` across calls.
    return breaker.state


class Boom(Exception):
    pass


class NotMyFault(Exception):
    pass


def boom() -> None:
    raise Boom


def ok() -> str:
    return "ok"


def recorder(breaker: CircuitBreaker) -> list[tuple[BreakerState, BreakerState, float]]:
    seen: list[tuple[BreakerState, BreakerState, float]] = []

    def listener(event: StateChangeEvent) -> None:
        seen.append((event.from_state, event.to_state, event.at))

    breaker.on_state_change(listener)
    return seen


def fail(breaker: CircuitBreaker, n: int = 1) -> None:
    for _ in range(n):
        with pytest.raises(Boom):
            breaker.call(boom)


def succeed(breaker: CircuitBreaker, n: int = 1) -> None:
    for _ in range(n):
        assert breaker.call(ok) == "ok"


def one_call(name: str, clock: ManualClock, **kw: Any) -> CircuitBreaker:
    """A breaker with a one-call window: its first recorded failure trips it."""
    return CircuitBreaker(name, minimum_calls=1, window_size=1, clock=clock, **kw)


def test_count_window_trip_half_open_and_close(manual_clock: ManualClock) -> None:
    b = CircuitBreaker(
        "count", minimum_calls=4, window_size=4, open_duration=10.0, clock=manual_clock
    )
    seen = recorder(b)
    succeed(b, 2)
    fail(b, 1)
    assert state_of(b) is CL  # 3 calls < minimum_calls
    fail(b, 1)  # 2/4 failures = 50% -> trips, and this call raises its own exception
    assert state_of(b) is OP
    with pytest.raises(CircuitOpenError) as info:
        b.call(ok)
    assert info.value.name == "count"
    assert info.value.retry_after == pytest.approx(10.0)
    manual_clock.advance(9.999)
    with pytest.raises(CircuitOpenError):
        b.call(ok)
    manual_clock.advance(0.001)
    succeed(b)  # the one trial
    assert state_of(b) is CL
    assert seen == [(CL, OP, 1000.0), (OP, HO, 1010.0), (HO, CL, 1010.0)]
    assert b.metrics().calls == 0  # the window restarts on close


def test_count_window_slides(manual_clock: ManualClock) -> None:
    b = CircuitBreaker("slide", minimum_calls=4, window_size=4, clock=manual_clock)
    seen = recorder(b)
    fail(b)
    succeed(b, 3)  # 1/4 = 25%
    fail(b)  # evicts the first failure: still 1/4
    succeed(b)
    fail(b)  # [s, f, s, f] -> 2/4 = 50% -> trips
    assert [(a, z) for a, z, _ in seen] == [(CL, OP)]


def test_failure_rate_threshold_is_inclusive_and_minimum_calls(manual_clock: ManualClock) -> None:
    b = CircuitBreaker(
        "rate",
        failure_rate_threshold=0.6,
        minimum_calls=5,
        window_size=10,
        clock=manual_clock,
    )
    fail(b, 4)
    assert state_of(b) is CL  # 4 calls < 5
    succeed(b, 1)  # 4/5 = 80% >= 60%: a success can complete the minimum and trip
    assert state_of(b) is OP


def test_time_window(manual_clock: ManualClock) -> None:
    b = CircuitBreaker(
        "time",
        window_type="time",
        window_size=10,
        minimum_calls=3,
        open_duration=5.0,
        clock=manual_clock,
    )
    seen = recorder(b)
    fail(b, 2)
    manual_clock.advance(10.0)  # both failures age out of the 10 s window
    fail(b, 1)
    succeed(b, 1)
    assert state_of(b) is CL
    assert b.metrics().calls == 2
    manual_clock.advance(3.0)
    fail(b, 1)  # 2 failures of 3 calls within 10 s -> trips
    assert state_of(b) is OP
    manual_clock.advance(5.0)
    fail(b)  # the trial fails -> open again
    manual_clock.advance(5.0)
    succeed(b)
    assert [(a, z, t - 1000.0) for a, z, t in seen] == [
        (CL, OP, 13.0),
        (OP, HO, 18.0),
        (HO, OP, 18.0),
        (OP, HO, 23.0),
        (HO, CL, 23.0),
    ]


def test_slow_calls_trip(manual_clock: ManualClock) -> None:
    b = CircuitBreaker(
        "slow",
        minimum_calls=3,
        window_size=3,
        slow_call_duration=1.0,
        slow_call_rate_threshold=0.6,
        clock=manual_clock,
    )
    seen = recorder(b)

    def slow() -> str:
        manual_clock.advance(1.0)  # exactly the threshold: slow
        return "late"

    def quick() -> str:
        manual_clock.advance(0.999)
        return "fine"

    assert b.call(slow) == "late"
    assert b.call(quick) == "fine"
    assert state_of(b) is CL
    assert b.call(slow) == "late"  # 2/3 slow = 67% >= 60% -> trips, result still returned
    assert state_of(b) is OP
    m = b.metrics()
    assert m.state is OP
    assert [(a, z) for a, z, _ in seen] == [(CL, OP)]


def test_slow_trial_reopens(manual_clock: ManualClock) -> None:
    b = one_call("slowtrial", manual_clock, slow_call_duration=2.0, open_duration=1.0)
    fail(b)
    manual_clock.advance(1.0)

    def slow() -> str:
        manual_clock.advance(3.0)
        return "late"

    b.call(slow)
    assert state_of(b) is OP


def test_exponential_open_duration_with_cap_and_reset_on_close(manual_clock: ManualClock) -> None:
    b = one_call(
        "expo",
        manual_clock,
        open_duration=1.0,
        open_duration_multiplier=2.0,
        max_open_duration=5.0,
    )
    opens: list[float] = []
    b.on_state_change(lambda e: opens.append(e.open_until - e.at) if e.to_state is OP else None)
    fail(b)
    for expected in (1.0, 2.0, 4.0, 5.0, 5.0):
        assert opens[-1] == pytest.approx(expected)
        with pytest.raises(CircuitOpenError) as info:
            b.call(ok)
        assert info.value.retry_after == pytest.approx(expected)
        manual_clock.advance(expected)
        fail(b)  # the trial fails: the next open lasts twice as long, up to the cap
    manual_clock.advance(5.0)
    succeed(b)  # closes, and the backoff is forgotten
    fail(b)
    assert opens[-1] == pytest.approx(1.0)


def test_jitter_stays_within_bounds(manual_clock: ManualClock) -> None:
    import random

    b = one_call(
        "jitter",
        manual_clock,
        open_duration=10.0,
        open_duration_jitter=0.2,
        rng=random.Random(7),
    )
    durations: list[float] = []
    b.on_state_change(lambda e: durations.append(e.open_until - e.at) if e.to_state is OP else None)
    for _ in range(30):
        fail(b)
        b.reset()
    assert all(8.0 <= d <= 12.0 for d in durations)
    assert len({round(d, 6) for d in durations}) > 20  # really spread


def test_ignored_exceptions_are_not_recorded(manual_clock: ManualClock) -> None:
    b = CircuitBreaker(
        "ignore",
        minimum_calls=2,
        window_size=2,
        ignore=(NotMyFault,),
        clock=manual_clock,
    )
    seen = recorder(b)

    def not_mine() -> None:
        raise NotMyFault

    for _ in range(5):
        with pytest.raises(NotMyFault):
            b.call(not_mine)
    assert b.metrics().calls == 0
    fail(b)
    with pytest.raises(NotMyFault):
        b.call(not_mine)
    fail(b)
    assert [(a, z) for a, z, _ in seen] == [(CL, OP)]


def test_unrecorded_exception_counts_as_success(manual_clock: ManualClock) -> None:
    b = CircuitBreaker("record", minimum_calls=2, window_size=2, record=(Boom,), clock=manual_clock)

    def other() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        b.call(other)
    fail(b)
    m = b.metrics()
    assert (m.calls, m.failed_calls) == (2, 1)
    assert state_of(b) is OP  # 1/2 = 50%


def test_interrupts_never_count(manual_clock: ManualClock) -> None:
    b = one_call("interrupts", manual_clock, record=(BaseException,))
    for exc in (KeyboardInterrupt, SystemExit, GeneratorExit):

        def raiser(exc: type[BaseException] = exc) -> None:
            raise exc

        with pytest.raises(exc):
            b.call(raiser)
    assert state_of(b) is CL
    assert b.metrics().calls == 0


def test_result_predicate_and_consecutive_failures(manual_clock: ManualClock) -> None:
    b = CircuitBreaker(
        "results",
        minimum_calls=100,
        window_size=100,
        consecutive_failures=3,
        record_result=lambda r: r is None,
        clock=manual_clock,
    )
    assert b.call(lambda: None) is None
    assert b.call(lambda: None) is None
    assert b.call(lambda: 1) == 1  # a success resets the run
    assert b.call(lambda: None) is None
    assert b.call(lambda: None) is None
    assert state_of(b) is CL
    assert b.call(lambda: None) is None  # third in a row
    assert state_of(b) is OP


def test_trip_predicate(manual_clock: ManualClock) -> None:
    b = CircuitBreaker(
        "pred",
        minimum_calls=100,
        window_size=100,
        trip_predicate=lambda c: c.failures >= 2,
        clock=manual_clock,
    )
    fail(b)
    succeed(b, 5)
    assert state_of(b) is CL
    fail(b)
    assert state_of(b) is OP


def test_max_half_open_wait(manual_clock: ManualClock) -> None:
    b = one_call("wait", manual_clock, open_duration=1.0, max_half_open_wait=2.0)
    seen = recorder(b)
    fail(b)
    manual_clock.advance(1.0)
    permit = b.try_acquire()  # a trial that never reports
    manual_clock.advance(2.0)
    assert state_of(b) is OP  # gave up waiting
    permit.success()  # from the old generation: discarded
    assert state_of(b) is OP
    assert [(a, z, t - 1000.0) for a, z, t in seen] == [(CL, OP, 0.0), (OP, HO, 1.0), (HO, OP, 3.0)]


def test_half_open_with_several_permits_and_verdict(manual_clock: ManualClock) -> None:
    b = one_call("several", manual_clock, open_duration=1.0, half_open_calls=3)
    fail(b)
    manual_clock.advance(1.0)
    p1, p2, p3 = b.try_acquire(), b.try_acquire(), b.try_acquire()
    with pytest.raises(CircuitOpenError):
        b.try_acquire()
    p2.ignore()  # gives its permit back
    p4 = b.try_acquire()
    p1.success()
    p3.success()
    assert state_of(b) is HO  # a verdict only when all trials are in
    assert b.metrics().half_open_calls_done == 2
    p4.failure()  # 1/3 < 50% -> closes
    assert state_of(b) is CL


def test_manual_transitions(manual_clock: ManualClock) -> None:
    b = one_call("manual", manual_clock)
    seen = recorder(b)
    b.force_open()
    with pytest.raises(CircuitOpenError) as info:
        b.call(ok)
    assert info.value.retry_after == 0.0
    manual_clock.advance(1e6)
    assert state_of(b) is BreakerState.FORCED_OPEN  # never leaves by itself
    b.disable()
    for _ in range(10):
        fail(b)
    assert state_of(b) is BreakerState.DISABLED
    assert b.metrics().calls == 0
    b.transition_to(HO)
    b.transition_to_open()
    b.transition_to_closed()
    fail(b)
    assert state_of(b) is OP
    assert b.metrics().not_permitted_calls == 1  # the FORCED_OPEN rejection
    with pytest.raises(CircuitOpenError):
        b.call(ok)
    assert b.metrics().not_permitted_calls == 2
    b.reset()
    assert b.metrics().not_permitted_calls == 0
    assert [z for _, z, _ in seen] == [
        BreakerState.FORCED_OPEN,
        BreakerState.DISABLED,
        HO,
        OP,
        CL,
        OP,
        CL,
    ]
