"""The call styles, permits, events, metrics and validation of the breakers."""

from __future__ import annotations

import asyncio
import logging
import pickle
from typing import Any

import pytest

from dsprims import (
    AsyncCircuitBreaker,
    AsyncPermit,
    BreakerState,
    CallEvent,
    CallOutcome,
    CircuitBreaker,
    CircuitOpenError,
    ConfigurationError,
    ManualClock,
    MemoryBackend,
    Permit,
    StateChangeEvent,
)


def is_settled(permit: Permit | AsyncPermit) -> bool:
    return permit.settled


def state_of(breaker: CircuitBreaker | AsyncCircuitBreaker) -> BreakerState:
    # A call, not an attribute: mypy would otherwise narrow ``breaker.state`` across calls.
    return breaker.state


class Boom(Exception):
    pass


def make(clock: ManualClock, **kw: Any) -> CircuitBreaker:
    kw.setdefault("minimum_calls", 2)
    kw.setdefault("window_size", 2)
    kw.setdefault("open_duration", 1.0)
    return CircuitBreaker("api", clock=clock, **kw)


def test_decorator_keeps_metadata_and_trips(manual_clock: ManualClock) -> None:
    b = make(manual_clock)

    @b
    def divide(a: int, b: int) -> float:
        """Divide."""
        return a / b

    assert divide.__name__ == "divide"
    assert divide.__doc__ == "Divide."
    assert divide(6, b=3) == 2
    with pytest.raises(ZeroDivisionError):
        divide(1, 0)
    assert state_of(b) is BreakerState.OPEN
    with pytest.raises(CircuitOpenError):
        divide(1, 1)


async def test_sync_breaker_decorates_async_functions(manual_clock: ManualClock) -> None:
    b = make(manual_clock)

    @b
    async def fetch(x: int) -> int:
        if x < 0:
            raise Boom
        return x

    assert await fetch(3) == 3
    with pytest.raises(Boom):
        await fetch(-1)
    assert state_of(b) is BreakerState.OPEN


def test_context_manager_and_nesting(manual_clock: ManualClock) -> None:
    b = make(manual_clock, minimum_calls=3, window_size=3)
    with b as outer:
        assert not is_settled(outer)
        with pytest.raises(Boom), b:
            raise Boom
        assert b.metrics().failed_calls == 1
    assert state_of(b) is BreakerState.CLOSED
    assert is_settled(outer)
    m = b.metrics()
    assert (m.calls, m.failed_calls) == (2, 1)


def test_permit_two_step_and_double_settle(manual_clock: ManualClock) -> None:
    b = make(manual_clock)
    p = b.try_acquire()
    p.failure()
    with pytest.raises(RuntimeError):
        p.success()
    q = b.try_acquire()
    q.record_exception(Boom())
    assert state_of(b) is BreakerState.OPEN
    with pytest.raises(CircuitOpenError):
        b.try_acquire()


def test_permit_record_result(manual_clock: ManualClock) -> None:
    b = make(manual_clock, record_result=lambda r: r == "bad")
    b.try_acquire().record_result("bad")
    b.try_acquire().record_result("good")
    assert state_of(b) is BreakerState.OPEN  # 1/2


def test_events_in_order_outside_the_lock(manual_clock: ManualClock) -> None:
    b = make(manual_clock)
    events: list[object] = []

    def on_event(event: object) -> None:
        # Outside the lock: using the breaker from a callback must not deadlock.
        b.metrics()
        events.append(event)

    b.on_state_change(on_event)
    b.on_call(on_event)
    b.call(lambda: 1)
    with pytest.raises(Boom):
        b.call(lambda: (_ for _ in ()).throw(Boom()))
    with pytest.raises(CircuitOpenError):
        b.call(lambda: 1)
    kinds = [
        e.outcome if isinstance(e, CallEvent) else (e.from_state, e.to_state)  # type: ignore[attr-defined]
        for e in events
    ]
    assert kinds == [
        CallOutcome.SUCCESS,
        CallOutcome.FAILURE,
        (BreakerState.CLOSED, BreakerState.OPEN),
        CallOutcome.REJECTED,
    ]
    failure = events[1]
    assert isinstance(failure, CallEvent)
    assert isinstance(failure.exception, Boom)
    assert failure.counted
    b.remove_listener(on_event)
    b.reset()
    assert len(events) == 4


async def test_call_listener_registered_while_open_sees_rejections(
    manual_clock: ManualClock,
) -> None:
    # The rejection fast path must step aside for a listener added while the breaker is open
    # (sync and async, rejection counts unchanged).
    for b in (make(manual_clock), AsyncCircuitBreaker("api-async", clock=manual_clock)):
        if isinstance(b, CircuitBreaker):
            b.force_open()
        else:
            await b.force_open()
        events: list[CallEvent] = []
        b.on_call(events.append)
        for _ in range(3):
            if isinstance(b, CircuitBreaker):
                with pytest.raises(CircuitOpenError):
                    b.call(lambda: 1)
            else:
                with pytest.raises(CircuitOpenError):
                    await b.call(asyncio.sleep, 0)
        assert [e.outcome for e in events] == [CallOutcome.REJECTED] * 3
        assert b.metrics().not_permitted_calls == 3
        b.remove_listener(events.append)


def test_subclass_override_of_call_is_kept(manual_clock: ManualClock) -> None:
    class Traced(CircuitBreaker):
        seen: list[object]

        def call(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            self.seen.append(fn)
            return super().call(fn, *args, **kwargs)

    b = Traced("traced", clock=manual_clock)
    b.seen = []
    assert b.call(int, "7") == 7
    assert b.seen == [int]
    assert CircuitBreaker.call(b, int, "8") == 8  # the documented method, through the class


def test_listener_errors_are_logged_not_raised(
    manual_clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    b = make(manual_clock)

    def broken(event: StateChangeEvent) -> None:
        raise RuntimeError("listener bug")

    b.on_state_change(broken)
    with caplog.at_level(logging.INFO, logger="dsprims.breaker"):
        b.force_open()
    assert "listener failed" in caplog.text
    assert "closed -> forced_open" in caplog.text


def test_metrics_are_frozen(manual_clock: ManualClock) -> None:
    b = make(manual_clock, minimum_calls=3, window_size=4)
    b.call(lambda: 1)
    m = b.metrics()
    assert m.failure_rate is None  # below minimum_calls
    with pytest.raises(AttributeError):
        m.calls = 5  # type: ignore[misc]
    with pytest.raises(Boom):
        b.call(lambda: (_ for _ in ()).throw(Boom()))
    b.call(lambda: 1)
    m = b.metrics()
    assert m.failure_rate == pytest.approx(1 / 3)
    assert m.name == "api"


def test_memory_backend_shares_state_between_instances(manual_clock: ManualClock) -> None:
    store = MemoryBackend()
    a = CircuitBreaker("shared", minimum_calls=1, window_size=1, backend=store, clock=manual_clock)
    b = CircuitBreaker("shared", minimum_calls=1, window_size=1, backend=store, clock=manual_clock)
    other = CircuitBreaker(
        "shared", minimum_calls=1, window_size=1, backend=store, prefix="p2", clock=manual_clock
    )
    with pytest.raises(Boom):
        a.call(lambda: (_ for _ in ()).throw(Boom()))
    assert state_of(b) is BreakerState.OPEN
    assert other.state is BreakerState.CLOSED
    with pytest.raises(ConfigurationError, match="other parameters"):
        CircuitBreaker("shared", minimum_calls=2, window_size=1, backend=store)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"failure_rate_threshold": 0.0}, "failure_rate_threshold"),
        ({"failure_rate_threshold": 1.01}, "failure_rate_threshold"),
        ({"slow_call_rate_threshold": -0.1}, "slow_call_rate_threshold"),
        ({"window_size": 0}, "window_size"),
        ({"window_type": "time", "window_size": 0.5}, "window_size"),
        ({"minimum_calls": 0}, "minimum_calls"),
        ({"half_open_calls": 0}, "half_open_calls"),
        ({"open_duration": -1.0}, "open_duration"),
        ({"open_duration": float("nan")}, "open_duration"),
        ({"slow_call_duration": -0.5}, "slow_call_duration"),
        ({"max_half_open_wait": 0.0}, "max_half_open_wait"),
        ({"open_duration_multiplier": 0.5}, "open_duration_multiplier"),
        ({"open_duration_jitter": 1.5}, "open_duration_jitter"),
        ({"max_open_duration": 1.0, "open_duration": 2.0}, "max_open_duration"),
        ({"consecutive_failures": 0}, "consecutive_failures"),
        ({"window_type": "sliding"}, "window_type"),
    ],
)
def test_bad_configuration(kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(ConfigurationError, match=param):
        CircuitBreaker("bad", **kwargs)


def test_bad_types() -> None:
    with pytest.raises(TypeError, match="window_size"):
        CircuitBreaker("bad", window_size=2.5)
    with pytest.raises(TypeError, match="record"):
        CircuitBreaker("bad", record=(ValueError, "x"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="failure_rate_threshold"):
        CircuitBreaker("bad", failure_rate_threshold="0.5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        CircuitBreaker("")
    with pytest.raises(ConfigurationError, match="backend"):
        CircuitBreaker("bad", backend=42)


def test_circuit_open_error_pickles() -> None:
    err = CircuitOpenError("x", 2.5)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.name, copy.retry_after) == ("x", 2.5)
    assert "retry after 2.500s" in str(copy)


def test_hostile_names_are_data(manual_clock: ManualClock) -> None:
    store = MemoryBackend()
    b = CircuitBreaker("{a}\n:b", backend=store, clock=manual_clock)
    assert b.call(lambda: 5) == 5
    assert len(store.keys()) == 1


async def test_async_breaker_paths(manual_clock: ManualClock) -> None:
    b = AsyncCircuitBreaker(
        "async", minimum_calls=2, window_size=2, open_duration=1.0, clock=manual_clock
    )

    @b
    async def work(fail: bool) -> str:
        await asyncio.sleep(0)
        if fail:
            raise Boom
        return "done"

    assert await work(False) == "done"
    async with b as permit:
        assert not permit.settled
    with pytest.raises(Boom):
        await work(True)
    assert state_of(b) is BreakerState.OPEN
    with pytest.raises(CircuitOpenError):
        await work(False)
    manual_clock.advance(1.0)
    trial = await b.try_acquire()
    assert trial.trial
    await trial.success()
    assert state_of(b) is BreakerState.CLOSED
    await b.force_open()
    assert state_of(b) is BreakerState.FORCED_OPEN
    await b.disable()
    await b.reset()
    await b.transition_to_open()
    await b.transition_to_half_open()
    await b.transition_to_closed()
    await b.transition_to(BreakerState.DISABLED)
    assert state_of(b) is BreakerState.DISABLED
    with pytest.raises(TypeError):
        b(lambda: 1)  # type: ignore[arg-type, return-value]


async def test_cancelled_trial_returns_its_permit(manual_clock: ManualClock) -> None:
    b = AsyncCircuitBreaker(
        "cancel", minimum_calls=1, window_size=1, open_duration=1.0, clock=manual_clock
    )
    with pytest.raises(Boom):
        await b.call(_raise_boom)
    manual_clock.advance(1.0)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(b.call(hang))
    await started.wait()
    with pytest.raises(CircuitOpenError):
        await b.call(_ok)  # the only permit is taken
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert state_of(b) is BreakerState.HALF_OPEN
    assert await b.call(_ok) == "ok"  # the permit came back
    assert state_of(b) is BreakerState.CLOSED


async def _raise_boom() -> None:
    raise Boom


async def _ok() -> str:
    return "ok"
