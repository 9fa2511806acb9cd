"""Properties of the pure core: the windows against a naive recomputation, permits never
exceed ``half_open_calls``, generations only grow, and the local breaker against a reference
model of the state machine."""

from __future__ import annotations

import contextlib
import math

from hypothesis import example, given
from hypothesis import strategies as st

from dsprims.breaker.core import (
    FAILURE,
    SLOW,
    BreakerParams,
    BreakerSnapshot,
    BreakerState,
    CountWindow,
    TimeWindow,
    advance,
    next_open_duration,
    on_acquire,
    release_trial,
    settle_trial,
)

CODES = st.sampled_from([0, 0, 0, FAILURE, SLOW, FAILURE | SLOW])


def naive_verdict(outcomes: list[int], params: BreakerParams, minimum: int) -> bool:
    calls = len(outcomes)
    failures = sum(1 for c in outcomes if c & FAILURE)
    slow = sum(1 for c in outcomes if c & SLOW)
    if calls < minimum or calls == 0:
        return False
    if failures / calls >= params.failure_rate_threshold:
        return True
    return params.slow_call_duration is not None and slow / calls >= params.slow_call_rate_threshold


@given(
    codes=st.lists(CODES, max_size=120),
    size=st.integers(1, 12),
    minimum=st.integers(1, 15),
    threshold=st.sampled_from([0.2, 0.5, 0.8, 1.0]),
)
def test_count_window_matches_naive(
    codes: list[int], size: int, minimum: int, threshold: float
) -> None:
    params = BreakerParams(
        window_size=size,
        minimum_calls=minimum,
        failure_rate_threshold=threshold,
        slow_call_duration=1.0,
        slow_call_rate_threshold=threshold,
    )
    w = CountWindow(params)
    history: list[int] = []
    for code in codes:
        reason = w.record(code, 0.0)
        history.append(code)
        last = history[-size:]
        assert (w.calls, w.failures, w.slow) == (
            len(last),
            sum(1 for c in last if c & FAILURE),
            sum(1 for c in last if c & SLOW),
        )
        assert w.slow_failures == sum(1 for c in last if c & FAILURE and c & SLOW)
        expected = naive_verdict(last, params, min(minimum, size))
        if expected:
            assert reason is not None
            # The breaker trips here; the shell would reset the window. Do the same.
            w.reset()
            history.clear()
        else:
            assert reason is None


@example(  # metrics() expires the successes, then a success must still see the verdict
    events=[(0, 0.0), (0, 0.0), (0, 0.0), (FAILURE, 1.0), (FAILURE, 0.0), (0, 1.05)],
    observe=[False, False, False, False, False, True],
    size=2.0,
    minimum=1,
)
@given(
    events=st.lists(
        st.tuples(CODES, st.floats(min_value=0.0, max_value=3.0, allow_nan=False)), max_size=80
    ),
    observe=st.lists(st.booleans(), max_size=80),
    size=st.sampled_from([1.0, 2.0, 5.0, 10.0, 60.0]),
    minimum=st.integers(1, 6),
)
def test_time_window_matches_naive(
    events: list[tuple[int, float]], observe: list[bool], size: float, minimum: int
) -> None:
    # ``observe`` reads the totals (as metrics() does) before some outcomes: reading them
    # expires old slices, and must never change a verdict.
    params = BreakerParams(
        window_type="time", window_size=size, minimum_calls=minimum, slow_call_duration=1.0
    )
    w = TimeWindow(params)
    buckets = max(10, min(100, math.ceil(size)))
    width = size / buckets
    now = 1000.0
    history: list[tuple[int, int]] = []  # (slice index, code)
    for n, (code, step) in enumerate(events):
        now += step
        if n < len(observe) and observe[n]:
            w.counts(now)
        reason = w.record(code, now)
        idx = int(now // width)
        history.append((idx, code))
        live = [c for i, c in history if idx - i < buckets]
        assert w.calls == len(live)
        assert w.failures == sum(1 for c in live if c & FAILURE)
        assert w.slow == sum(1 for c in live if c & SLOW)
        if naive_verdict(live, params, minimum):
            assert reason is not None
            w.reset()
            history.clear()
        else:
            assert reason is None


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("acquire"), st.just(0)),
        st.tuples(st.just("settle"), st.integers(0, 3)),
        st.tuples(st.just("release"), st.integers(0, 3)),
        st.tuples(st.just("advance"), st.integers(0, 5000)),
    ),
    max_size=60,
)


@given(ops=OPS, permits=st.integers(1, 3), wait=st.sampled_from([None, 3.0]))
def test_half_open_permits_never_exceed_and_generations_grow(
    ops: list[tuple[str, int]], permits: int, wait: float | None
) -> None:
    params = BreakerParams(
        half_open_calls=permits,
        open_duration=1.0,
        open_duration_multiplier=2.0,
        max_open_duration=4.0,
        max_half_open_wait=wait,
    )
    now = 0.0
    snap = BreakerSnapshot(BreakerState.OPEN, 1, 0.0, 1.0, 1)
    held: list[int] = []  # generations of outstanding trial permits
    for op, arg in ops:
        before = snap.generation
        if op == "acquire":
            adm, snap, _ = on_acquire(snap, now, params, 0.5)
            if adm.trial:
                held.append(adm.generation)
        elif op == "settle" and held:
            gen = held.pop(arg % len(held))
            _, snap, _ = settle_trial(snap, now, gen, FAILURE if arg % 2 else 0, params, 0.5)
        elif op == "release" and held:
            snap = release_trial(snap, held.pop(arg % len(held)))
        elif op == "advance":
            now += arg / 1000
            snap, _ = advance(snap, now, params, 0.5)
        assert snap.generation >= before
        if snap.state is BreakerState.HALF_OPEN:
            assert 0 <= snap.permits_out + snap.trial_calls <= permits
            live = sum(1 for g in held if g == snap.generation)
            assert snap.permits_out == live
        if snap.state is BreakerState.OPEN:
            assert snap.open_until - snap.since <= 4.0 + 1e-9


@given(count=st.integers(0, 10_000), u=st.floats(0.0, 1.0, exclude_max=True))
def test_open_duration_is_capped_and_finite(count: int, u: float) -> None:
    params = BreakerParams(
        open_duration=1.0,
        open_duration_multiplier=3.0,
        max_open_duration=100.0,
        open_duration_jitter=0.5,
    )
    d = next_open_duration(params, count, u)
    assert 0.0 <= d <= 100.0
    assert math.isfinite(d)


BREAKER_OPS = st.lists(
    st.one_of(
        st.sampled_from(["ok"] * 6 + ["fail"] * 3 + ["trial-ok", "trial-fail"]),
        st.integers(1, 3000).map(lambda ms: f"advance {ms}"),
    ),
    max_size=150,
)


@example(  # a success replacing a success while a failure sits further along the ring
    ops=["ok", "fail", "ok", "ok", "ok", "fail"], window_type="count", size=3, minimum=3
)
@example(  # metrics() (after every op) expires the successes; the next success must still trip
    ops=["ok", "ok", "ok", "advance 1000", "fail", "fail", "advance 1050", "ok"],
    window_type="time",
    size=2,
    minimum=1,
)
@given(
    ops=BREAKER_OPS,
    window_type=st.sampled_from(["count", "time"]),
    size=st.sampled_from([2, 3, 5]),
    minimum=st.integers(1, 4),
)
def test_fast_paths_change_no_decision(
    ops: list[str], window_type: str, size: int, minimum: int
) -> None:
    # A trip predicate that never fires switches every fast path off (no quiet skip, no
    # inlined window update) without changing a single decision: the two must agree.
    from dsprims import CircuitBreaker, CircuitOpenError, ManualClock

    clocks = [ManualClock(start=100.0), ManualClock(start=100.0)]
    kw = {
        "window_type": window_type,
        "window_size": size,
        "minimum_calls": minimum,
        "open_duration": 1.0,
        "slow_call_duration": None,
    }
    fast = CircuitBreaker("fast", clock=clocks[0], **kw)  # type: ignore[arg-type]
    slow = CircuitBreaker(
        "slow",
        clock=clocks[1],
        trip_predicate=lambda c: False,
        **kw,  # type: ignore[arg-type]
    )
    for op in ops:
        seen = []
        for b, clock in ((fast, clocks[0]), (slow, clocks[1])):
            if op.startswith("advance"):
                clock.advance(int(op.split()[1]) / 1000)
                continue
            try:
                if op in ("ok", "slow"):
                    b.call(int)  # the shells' own fast paths (quiet skip, inlined success)
                elif op == "fail":
                    with contextlib.suppress(ZeroDivisionError):
                        b.call(divmod, 1, 0)
                else:
                    permit = b.try_acquire()
                    if op == "trial-fail":
                        permit.failure()
                    else:
                        permit.success()
            except CircuitOpenError:
                seen.append("rejected")
                continue
            seen.append("ran")
        assert len(set(seen)) <= 1, op
        mf, ms = fast.metrics(), slow.metrics()
        assert (mf.state, mf.calls, mf.failed_calls, mf.generation) == (
            ms.state,
            ms.calls,
            ms.failed_calls,
            ms.generation,
        ), op


@given(
    size=st.sampled_from([1.0, 2.0, 3.0, 7.5, 10.0, 60.0, 3600.0, 1.1]),
    start=st.floats(min_value=0.0, max_value=1e9, allow_nan=False, allow_infinity=False),
    steps=st.lists(st.floats(min_value=0.0, max_value=5.0), max_size=20),
)
def test_time_window_fast_success_is_exactly_the_head_slice(
    size: float, start: float, steps: list[float]
) -> None:
    # quiet_until is the first reading past the head slice (slices are t // width): a reading
    # below it is in the head slice, the reading itself is not.
    w = TimeWindow(BreakerParams(window_type="time", window_size=size, minimum_calls=1))
    now = start
    for step in [0.0, *steps]:
        now += step
        w.record(0, now)
        head = now // w._width
        end = w.quiet_until
        assert end > now
        assert end // w._width > head
        assert math.nextafter(end, -math.inf) // w._width == head
