"""The pure cores: golden vectors, reference models, and the retry_after exactness contract."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsprims import ConfigurationError
from dsprims.ratelimit.core import (
    CounterParams,
    LogParams,
    TokenBucketParams,
    check_cost,
)
from tests.ratelimit.helpers import CoreRunner
from tests.ratelimit.vectors import BASE_US, VECTORS


@pytest.mark.parametrize(("algo", "params", "steps"), VECTORS, ids=[v[0] for v in VECTORS])
def test_golden_vectors(algo: str, params: dict[str, Any], steps: list[Any]) -> None:
    runner = CoreRunner(algo, params)
    got = [runner.step(BASE_US + off, cost, consume) for off, cost, consume, _ in steps]
    assert got == [expected for *_, expected in steps]


# -- parameters ------------------------------------------------------------------------------


def test_token_bucket_interval_rounds_up_to_whole_microseconds() -> None:
    assert TokenBucketParams(10, 1).interval_us == 100_000
    assert TokenBucketParams(3, 1).interval_us == 333_334  # never faster than asked
    assert TokenBucketParams(1e6 / 86400, 1).interval_us == 86_400  # float dust snapped
    assert TokenBucketParams(1e6, 5).tolerance_us == 5


@pytest.mark.parametrize(
    ("kwargs", "error", "word"),
    [
        ({"rate": 0, "capacity": 1}, ConfigurationError, "rate"),
        ({"rate": -1, "capacity": 1}, ConfigurationError, "rate"),
        ({"rate": math.nan, "capacity": 1}, ConfigurationError, "rate"),
        ({"rate": math.inf, "capacity": 1}, ConfigurationError, "rate"),
        ({"rate": 2e6, "capacity": 1}, ConfigurationError, "rate"),
        ({"rate": "1", "capacity": 1}, TypeError, "rate"),
        ({"rate": 1, "capacity": 0}, ConfigurationError, "capacity"),
        ({"rate": 1, "capacity": 1.5}, ConfigurationError, "capacity"),
        ({"rate": 1, "capacity": math.inf}, ConfigurationError, "capacity"),
        ({"rate": 1, "capacity": True}, TypeError, "capacity"),
        ({"rate": 1e-9, "capacity": 10**9}, ConfigurationError, "capacity"),
        ({"rate": 5e-324, "capacity": 1}, ConfigurationError, "rate"),
    ],
)
def test_token_bucket_params_reject_bad_values(
    kwargs: dict[str, Any], error: type[Exception], word: str
) -> None:
    with pytest.raises(error, match=word):
        TokenBucketParams(**kwargs)


@pytest.mark.parametrize("cls", [CounterParams, LogParams])
@pytest.mark.parametrize(
    ("limit", "window", "word"),
    [
        (0, 1.0, "limit"),
        (-3, 1.0, "limit"),
        (2.5, 1.0, "limit"),
        (5, 0, "window"),
        (5, -1.0, "window"),
        (5, math.nan, "window"),
        (5, math.inf, "window"),
        (5, 1e-9, "window"),
    ],
)
def test_window_params_reject_bad_values(cls: Any, limit: Any, window: Any, word: str) -> None:
    with pytest.raises(ConfigurationError, match=word):
        cls(limit, window)


def test_counter_switches_to_millisecond_ticks_for_huge_limits() -> None:
    params = CounterParams(10**6, 86400.0)
    assert params.tick_us == 1000
    assert params.window_ticks == 86_400_000
    assert CounterParams(100, 1.0).tick_us == 1


def test_cost_checks() -> None:
    assert check_cost(3, 3) == 3
    assert check_cost(0, 3) == 0
    with pytest.raises(ConfigurationError, match="can never be admitted"):
        check_cost(4, 3)
    with pytest.raises(ConfigurationError, match="cost"):
        check_cost(-1, 3)
    for bad in (1.0, "1", None, True):
        with pytest.raises(TypeError, match="cost"):
            check_cost(bad, 3)


# -- reference models ------------------------------------------------------------------------

steps_strategy = st.lists(
    st.tuples(
        st.one_of(  # time step in us; some land exactly on window boundaries
            st.sampled_from([0, 1, 999, 1000, 250_000]),
            st.integers(min_value=0, max_value=400_000),
        ),
        st.integers(min_value=0, max_value=5),  # cost (clamped to the limit)
        st.booleans(),  # consume (False = peek)
    ),
    min_size=1,
    max_size=60,
)


@given(
    rate=st.sampled_from([1, 3, 7.5, 10, 1000, 123_456]),
    capacity=st.integers(min_value=1, max_value=6),
    steps=steps_strategy,
)
def test_gcra_matches_a_continuous_token_bucket(
    rate: float, capacity: int, steps: list[tuple[int, int, bool]]
) -> None:
    """GCRA equals a bucket whose level refills continuously at one token per T (exactly)."""
    params = TokenBucketParams(rate, capacity)
    interval = params.interval_us
    runner = CoreRunner("token_bucket", {"rate": rate, "capacity": capacity})
    level = Fraction(capacity)
    last = now = BASE_US
    for dt, raw_cost, consume in steps:
        now += dt
        cost = min(raw_cost, capacity)
        level = min(Fraction(capacity), level + Fraction(now - last, interval))
        last = now
        allowed, remaining, retry, _reset = runner.step(now, cost, consume)
        assert bool(allowed) == (level >= cost)
        if allowed:
            if consume:
                level -= cost
            assert remaining == math.floor(level)
            assert retry == 0
        else:
            assert remaining == math.floor(level)
            assert retry == math.ceil((cost - level) * interval)


@given(
    limit=st.integers(min_value=1, max_value=6),
    window=st.sampled_from([0.001, 0.25, 1.0, 3.0]),
    steps=steps_strategy,
)
def test_sliding_log_is_exact(
    limit: int, window: float, steps: list[tuple[int, int, bool]]
) -> None:
    """Admitted iff the cost admitted in (now - window, now] plus this cost fits the limit."""
    w = LogParams(limit, window).window_us
    runner = CoreRunner("log", {"limit": limit, "window": window})
    history: list[tuple[int, int]] = []
    now = BASE_US
    for dt, raw_cost, consume in steps:
        now += dt
        cost = min(raw_cost, limit)
        live = sum(c for t, c in history if t > now - w)
        allowed, remaining, retry, _reset = runner.step(now, cost, consume)
        assert bool(allowed) == (live + cost <= limit)
        if allowed and consume and cost:
            history.append((now, cost))
        assert remaining == limit - sum(c for t, c in history if t > now - w)
        if not allowed:
            # the earliest instant at which enough has left the window
            wait = min(
                t + w - now
                for t, _ in history
                if sum(c for t2, c in history if t2 > t and t2 > now - w) + cost <= limit
            )
            assert retry == wait
    # at most `limit` in any window [s, s + w): checking windows that start at an admission
    for start, _ in history:
        assert sum(c for t, c in history if start <= t < start + w) <= limit


@given(
    limit=st.integers(min_value=1, max_value=6),
    window=st.sampled_from([0.001, 0.25, 1.0, 3.0]),
    steps=steps_strategy,
)
def test_sliding_counter_matches_the_two_bucket_formula(
    limit: int, window: float, steps: list[tuple[int, int, bool]]
) -> None:
    w = CounterParams(limit, window).window_ticks
    runner = CoreRunner("counter", {"limit": limit, "window": window})
    counts: dict[int, int] = {}
    now = BASE_US
    for dt, raw_cost, consume in steps:
        now += dt
        cost = min(raw_cost, limit)
        index, elapsed = divmod(now, w)
        weighted = counts.get(index - 1, 0) * (w - elapsed) + counts.get(index, 0) * w
        allowed, _remaining, _retry, _reset = runner.step(now, cost, consume)
        assert bool(allowed) == (weighted + cost * w <= limit * w)
        if allowed and consume:
            counts[index] = counts.get(index, 0) + cost
        # never more than `limit` inside one fixed window
        assert counts.get(index, 0) <= limit


@pytest.mark.parametrize(
    ("algo", "params"),
    [
        ("token_bucket", {"rate": 3, "capacity": 4}),
        ("counter", {"limit": 4, "window": 0.7}),
        ("log", {"limit": 4, "window": 0.7}),
    ],
)
@given(steps=steps_strategy)
def test_retry_after_is_exact(
    algo: str, params: dict[str, Any], steps: list[tuple[int, int, bool]]
) -> None:
    """After a denial, a peek 1 us before now + retry_after is denied and at it is admitted."""
    runner = CoreRunner(algo, params)
    now = BASE_US
    for dt, raw_cost, _consume in steps:
        now += dt
        cost = min(raw_cost, 4) or 1
        allowed, _rem, retry, _reset = runner.step(now, cost, True)
        if not allowed:
            assert retry > 0
            assert runner.step(now + retry - 1, cost, False)[0] == 0
            assert runner.step(now + retry, cost, False)[0] == 1
            now += retry


def test_gcra_reservations_keep_the_schedule() -> None:
    """Booked admissions follow each other exactly one interval apart, after the burst."""
    from dsprims.ratelimit.core import gcra_decide, gcra_reserve

    p = TokenBucketParams(4, 2)  # T = 250_000 us, tau = 500_000 us
    tat, now = BASE_US, BASE_US
    waits = []
    for _ in range(5):
        reserved, remaining, wait, _reset, tat = gcra_reserve(
            p.interval_us, p.tolerance_us, tat, now, 1, 2**52
        )
        assert reserved
        assert remaining == 0 or wait == 0
        waits.append(wait)
    assert waits == [0, 0, 250_000, 500_000, 750_000]
    # a plain decision sees the queue: no tokens, admission after the last booking
    allowed, remaining, retry, _reset, _ = gcra_decide(
        p.interval_us, p.tolerance_us, tat, now, 1, True
    )
    assert (allowed, remaining, retry) == (False, 0, 1_000_000)
    # a booking that would wait too long books nothing and says how long it would have been
    reserved, _rem, wait, _reset, same = gcra_reserve(
        p.interval_us, p.tolerance_us, tat, now, 1, 999_999
    )
    assert (reserved, wait, same) == (False, 1_000_000, tat)
