"""The limiters on the memory backend: API, exactness through float seconds, waits, bad input."""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from dsprims import (
    AsyncCompositeLimiter,
    AsyncSlidingWindowCounter,
    AsyncSlidingWindowLog,
    AsyncTokenBucket,
    CompositeLimiter,
    ConfigurationError,
    ManualClock,
    MemoryBackend,
    RateLimitDecision,
    RateLimitExceeded,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
)
from dsprims._mutex import TokenMutex
from dsprims.ratelimit.core import TokenBucketParams, gcra_decide, gcra_reserve
from dsprims.ratelimit.decision import decision_from_verdict
from dsprims.ratelimit.limiters import _FLOAT_T, _FLOAT_TAT, _MARGIN, _ROUNDER, _now_us
from dsprims.testing.strategies import hostile_keys
from tests.interrupts import InterruptedTake
from tests.ratelimit.helpers import CoreRunner

Limiter = TokenBucket | SlidingWindowCounter | SlidingWindowLog


def _traffic_step(
    op: str, limiter: Limiter, other: Limiter, store: MemoryBackend, k: int, key: str, cost: int
) -> tuple[int, RateLimitDecision] | None:
    """One step of the differential fast-path tests: ``(cost, decision)``, or ``None``.

    ``"reset"`` (by ``limiter``, or by ``other`` for key 0) and ``"sweep"`` (expired entries
    leave the store's table) decide nothing; ``"try1"`` takes the default cost, ``"other"``
    decides through the second limiter, ``"peek"`` consumes nothing, anything else is a
    ``try_acquire``.
    """
    if op == "reset":
        (limiter if k else other).reset(key)
        return None
    if op == "sweep":
        len(store)  # sweeps: expired entries leave the table
        return None
    if op == "try1":
        return 1, limiter.try_acquire(key)
    if op == "other":
        return cost, other.try_acquire(key, cost)
    if op == "peek":
        return cost, limiter.peek(key, cost)
    return cost, limiter.try_acquire(key, cost)


def _tb(**kw: Any) -> Limiter:
    return TokenBucket(5, 3, **kw)


def _counter(**kw: Any) -> Limiter:
    return SlidingWindowCounter(3, 0.6, **kw)


def _log(**kw: Any) -> Limiter:
    return SlidingWindowLog(3, 0.6, **kw)


SYNC: dict[str, Callable[..., Limiter]] = {"token_bucket": _tb, "counter": _counter, "log": _log}
CORE_PARAMS: dict[str, dict[str, Any]] = {
    "token_bucket": {"rate": 5, "capacity": 3},
    "counter": {"limit": 3, "window": 0.6},
    "log": {"limit": 3, "window": 0.6},
}


def test_token_bucket_basics(manual_clock: ManualClock) -> None:
    bucket = TokenBucket(2, 3, clock=manual_clock)
    assert [bucket.try_acquire("a").allowed for _ in range(4)] == [True, True, True, False]
    denied = bucket.try_acquire("a")
    assert denied == RateLimitDecision(False, 0, 0.500001, 1.5, 3)
    assert bucket.try_acquire("b").allowed  # keys are independent
    manual_clock.advance(denied.retry_after)
    assert bucket.try_acquire("a").allowed


def test_decision_headers() -> None:
    allowed = RateLimitDecision(True, 7, 0.0, 2.2, 10)
    assert allowed.headers() == {
        "RateLimit-Limit": "10",
        "RateLimit-Remaining": "7",
        "RateLimit-Reset": "3",
    }
    denied = RateLimitDecision(False, 0, 0.2, 4.0, 10)
    assert denied.headers()["Retry-After"] == "1"
    assert denied.headers()["RateLimit-Reset"] == "4"
    assert RateLimitDecision(False, 0, 2.000001, 4.0, 10).headers()["Retry-After"] == "3"


@pytest.mark.parametrize("algo", list(SYNC))
def test_peek_consumes_nothing_and_reset_forgets(algo: str, manual_clock: ManualClock) -> None:
    limiter = SYNC[algo](clock=manual_clock)
    assert limiter.peek("k").remaining == 3
    for _ in range(5):
        assert limiter.peek("k", 2).allowed
    assert [limiter.try_acquire("k").allowed for _ in range(4)] == [True, True, True, False]
    assert not limiter.peek("k").allowed
    limiter.reset("k")
    assert limiter.peek("k").remaining == 3
    assert limiter.try_acquire("k", 3).allowed


@pytest.mark.parametrize("algo", list(SYNC))
@given(
    steps=st.lists(
        st.tuples(st.integers(min_value=0, max_value=300_000), st.integers(0, 3), st.booleans()),
        min_size=1,
        max_size=40,
    )
)
def test_memory_limiter_runs_the_core(algo: str, steps: list[tuple[int, int, bool]]) -> None:
    """The shell adds nothing: float-second clocks give the core's integer decisions."""
    clock = ManualClock(start=1000.0)
    limiter = SYNC[algo](clock=clock)
    runner = CoreRunner(algo, CORE_PARAMS[algo])
    now = 1_000_000_000
    for dt, cost, consume in steps:
        clock.advance(dt / 1e6)
        now += dt
        got = limiter.try_acquire("k", cost) if consume else limiter.peek("k", cost)
        allowed, remaining, retry, reset = runner.step(now, cost, consume)
        assert got.allowed == bool(allowed)
        assert got.remaining == remaining
        assert got.retry_after == (0.0 if allowed else (retry + 1) / 1e6)
        assert got.reset_after == reset / 1e6


# Partly drained buckets with a µs-scale interval, admitted and denied with tokens left: every
# branch of the inlined step meets a remainder that an off-by-one would change.
@example(
    rate=1e6,
    capacity=3,
    steps=[
        (0, 0, 1, "try"),
        (0, 0, 2, "try"),  # exactly at the burst tolerance: admitted
        (0, 0, 3, "try"),
        (1, 0, 1, "try1"),
        (2, 0, 3, "try"),  # denied with 2 tokens left
        (0, 0, 1, "try"),
        (10, 0, 1, "try1"),  # full again, the default cost
        (1, 0, 1, "try1"),
    ],
)
@example(
    rate=250_000,
    capacity=10,
    steps=[
        (0, 1, 3, "try"),
        (20, 1, 4, "try"),  # full again: 6 left
        (1, 1, 9, "try"),
        (3, 1, 2, "try"),
        (0, 1, 0, "try"),
    ],
)
# A bucket full again (within the entry's expiry margin) taking the default cost must keep its
# entry until it is full again: a later request inside that time is denied (an entry that
# expired early would read as full).
@example(
    rate=1,
    capacity=2,
    steps=[(0, 2, 1, "try"), (1_000_500, 2, 1, "try1"), (700_000, 2, 2, "try")],
)
# An interval whose reset_after (5 µs) differs between 5 / 1e6 and 5 * 1e-6.
@example(rate=200_000, capacity=3, steps=[(0, 0, 1, "try"), (10, 0, 1, "try1")])
@given(
    rate=st.sampled_from([1, 3, 5, 7.5, 1000, 200_000, 250_000, 1e6]),
    capacity=st.sampled_from([1, 2, 3, 10, 10**9]),
    steps=st.lists(
        st.tuples(
            # µs to advance; a few µs keep buckets with a µs-scale interval partly drained
            st.one_of(st.integers(0, 9), st.integers(0, 2_000), st.integers(0, 3_000_000)),
            st.integers(0, 2),  # key
            st.integers(0, 12),  # cost (clamped to the capacity)
            st.sampled_from(
                ["try", "try", "try", "try1", "other", "peek", "reserve", "reset", "sweep"]
            ),
        ),
        min_size=1,
        max_size=60,
    ),
)
def test_inlined_gcra_fast_path_is_the_core(
    rate: float, capacity: int, steps: list[tuple[int, int, int, str]]
) -> None:
    """Differential: TokenBucket.try_acquire (GCRA inlined in the memory shell) == gcra_decide.

    Several keys, any cost up to the capacity, denials, expired keys, and reservations that push
    the stored time past ``now + tau`` (which only ``acquire`` can do), interleaved with peeks,
    resets, sweeps of the store, and decisions of a second limiter of the same settings sharing
    the keys (each limiter remembers the entries of its keys, and must notice when another
    replaced or removed them): every decision, field by field and type by type, is the pure
    core's.
    """
    clock = ManualClock(start=1000.0)
    bucket = TokenBucket(rate, capacity, clock=clock)
    store = bucket._store
    assert store is not None
    other = TokenBucket(rate, capacity, clock=clock, backend=store)
    params = TokenBucketParams(rate, capacity)
    interval, tolerance = params.interval_us, params.tolerance_us
    tats: dict[str, int] = {}
    for dt, k, cost, op in steps:
        clock.advance(dt / 1e6)
        key = f"user-{k}"
        cost = min(cost, capacity)
        now = _now_us(clock.monotonic())
        tat = tats.get(key, now)
        if op == "reserve":
            got = bucket._reserve_local(store, key, cost, 5_000_000)
            *want, new_tat = gcra_reserve(interval, tolerance, tat, now, cost, 5_000_000)
            assert tuple(got) == tuple(want)
            if want[0]:
                tats[key] = new_tat
            continue
        step = _traffic_step(op, bucket, other, store, k, key, cost)
        if step is None:
            if op == "reset":
                tats.pop(key, None)
            continue
        cost, decision = step
        consume = op != "peek"
        allowed, remaining, retry, reset, new_tat = gcra_decide(
            interval, tolerance, tat, now, cost, consume
        )
        if allowed and consume:
            tats[key] = new_tat
        expected = decision_from_verdict(allowed, remaining, retry, reset, capacity)
        assert decision == expected
        assert [type(v) for v in decision] == [type(v) for v in expected]
        assert type(decision) is RateLimitDecision


class _SteppingClock:
    """A clock read from a settable value: any float, forwards or backwards (tests only)."""

    def __init__(self, t: float) -> None:
        self.t = t

    def monotonic(self) -> float:
        return self.t

    def time_ns(self) -> int:
        return int(self.t * 1e9)

    def sleep(self, seconds: float) -> None:
        self.t += seconds

    async def asleep(self, seconds: float) -> None:
        self.t += seconds


#: Float µs readings t * 1e6 with a fractional part of exactly one half: the rounding ties of
#: floor(t * 1e6 + 0.5).
_TIES = st.integers(-(2**40), 2**40).map(lambda n: (2 * n + 1) / 2e6)


# The clock at the very edge of the float range, and just beyond it, both signs.
@example(
    rate=1,
    capacity=3,
    start=math.nextafter(_FLOAT_T, 0.0),
    steps=[(0.0, 1, "try"), (1e-6, 1, "try1"), (_FLOAT_T, 1, "try"), (0.0, 2, "try")],
)
@example(
    rate=1,
    capacity=3,
    start=-math.nextafter(_FLOAT_T, 0.0),
    steps=[(0.0, 1, "try"), (-1.0, 3, "try"), (-_FLOAT_T, 1, "try1"), (1e-6, 1, "try")],
)
# Reservations booking decades ahead push the stored time past 2**52 µs (the float limit of
# the stored time): the fast path must hand those to the core.
@example(
    rate=1,
    capacity=10**9,
    start=1000.0,
    steps=[(0.0, 10**9, "reserve")] * 6 + [(0.0, 1, "try1"), (1.0, 0, "try"), (0.0, 5, "try")],
)
# ... and beyond 2**53 (booked with the clock beyond the float range, read after it stepped
# back), where an odd stored time has no exact double.
@example(
    rate=1,
    capacity=10**9,
    start=4.3e9 + 3e-6,
    steps=[(0.0, 10**9 - 1, "reserve")] * 6
    + [(1000.0 - (4.3e9 + 3e-6), 1, "try1"), (1e-6, 3, "try"), (1e-6, 1, "try")],
)
# A tie: 1000.0000005 s is exactly 1000000000.5 µs.
@example(rate=1e6, capacity=3, start=1000.0000005, steps=[(0.0, 2, "try"), (0.0, 1, "try1")])
@given(
    rate=st.sampled_from([1, 3, 7.5, 1000, 250_000, 1e6]),
    capacity=st.sampled_from([1, 3, 10, 10**9]),
    start=st.one_of(
        st.floats(min_value=-3e9, max_value=3e9),
        _TIES,
        st.sampled_from([0.0, -0.0, 1e-7, -1e-7, _FLOAT_T, -_FLOAT_T]),
    ),
    steps=st.lists(
        st.tuples(
            # seconds to move the clock, backwards too
            st.one_of(
                st.integers(-3, 9).map(lambda us: us / 1e6),
                st.floats(min_value=-2.0, max_value=5.0),
                st.floats(min_value=-2e9, max_value=2e9),
                st.just(0.0),
            ),
            st.integers(0, 10**9),  # cost (clamped to the capacity)
            st.sampled_from(["try", "try", "try", "try1", "reserve"]),
        ),
        min_size=1,
        max_size=40,
    ),
)
def test_float_fast_path_equals_the_int_path_on_any_clock(
    rate: float, capacity: int, start: float, steps: list[tuple[float, int, str]]
) -> None:
    """Differential: the fast path's float arithmetic == the integer core, at any clock reading.

    Two buckets of the same settings on separate stores read one clock that jumps anywhere,
    forwards and backwards: huge and negative times (beyond the fast path's float range),
    rounding ties of the µs conversion, and reservations of any size (which may push the stored
    time beyond the float range). One decides through ``try_acquire`` (the fast path), the other
    through the general path, which runs the integer core ``gcra_decide``; every decision is the
    same, field by field and type by type.
    """
    clock = _SteppingClock(start)
    fast = TokenBucket(rate, capacity, clock=clock)
    slow = TokenBucket(rate, capacity, clock=clock)
    for seconds, cost, op in steps:
        clock.t += seconds
        cost = min(cost, capacity)
        if op == "reserve":
            got = fast._reserve_local(fast._store, "k", cost, 2**52)  # type: ignore[arg-type]
            want = slow._reserve_local(slow._store, "k", cost, 2**52)  # type: ignore[arg-type]
            assert got == want
            continue
        decision = fast.try_acquire("k") if op == "try1" else fast.try_acquire("k", cost)
        expected = slow._memory("k", 1 if op == "try1" else cost, True)
        assert decision == expected
        assert [type(v) for v in decision] == [type(v) for v in expected]
        assert type(decision) is RateLimitDecision


def test_fast_path_literals_are_the_documented_constants() -> None:
    """The token bucket's fast path writes its float constants as literals: they are these."""
    consts = set(TokenBucket(1, 3).try_acquire.__code__.co_consts)
    assert {_ROUNDER, _FLOAT_T, -_FLOAT_T, _FLOAT_TAT, _MARGIN} <= consts
    assert _FLOAT_T == 2.0**50 / 1e6
    assert _ROUNDER + 0.5 == _ROUNDER  # doubles are 1 apart there: + and - round to integers


@pytest.mark.parametrize("algo", ["counter", "log"])
@given(
    steps=st.lists(
        st.tuples(
            st.one_of(st.integers(0, 2_000), st.integers(0, 700_000)),  # µs to advance
            st.integers(0, 2),  # key
            st.integers(0, 3),  # cost
            st.sampled_from(["try", "try", "try", "try1", "other", "peek", "reset", "sweep"]),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_memory_fast_path_is_the_core_across_keys_and_limiters(
    algo: str, steps: list[tuple[int, int, int, str]]
) -> None:
    """Differential: the sliding log's and counter's specialised try_acquire == the pure core.

    Each limiter remembers its keys' entries; resets, sweeps, and a second limiter of the same
    settings sharing the keys must never leave it deciding on a stale entry.
    """
    clock = ManualClock(start=1000.0)
    limiter = SYNC[algo](clock=clock)
    store = limiter._store
    assert store is not None
    other = SYNC[algo](clock=clock, backend=store)
    runners: dict[str, CoreRunner] = {}
    now = 1_000_000_000
    for dt, k, cost, op in steps:
        clock.advance(dt / 1e6)
        now += dt
        key = f"user-{k}"
        runner = runners.setdefault(key, CoreRunner(algo, CORE_PARAMS[algo]))
        step = _traffic_step(op, limiter, other, store, k, key, cost)
        if step is None:
            if op == "reset":
                del runners[key]
            continue
        cost, got = step
        consume = op != "peek"
        allowed, remaining, retry, reset = runner.step(now, cost, consume)
        assert got == (
            bool(allowed),
            remaining,
            0.0 if allowed else (retry + 1) / 1e6,
            reset / 1e6,
            3,
            False,
        )
        assert type(got) is RateLimitDecision


@pytest.mark.parametrize("algo", list(SYNC))
@given(
    start=st.floats(min_value=0.0, max_value=1e7, allow_nan=False),
    gaps=st.lists(st.floats(min_value=0.0, max_value=0.5), min_size=1, max_size=30),
)
def test_waiting_retry_after_admits(algo: str, start: float, gaps: list[float]) -> None:
    """The exactness contract on arbitrary float clocks: wait retry_after, retry, admitted."""
    clock = ManualClock(start=start)
    limiter = SYNC[algo](clock=clock)
    for gap in gaps:
        clock.advance(gap)
        decision = limiter.try_acquire("k", 2)
        if not decision.allowed:
            clock.advance(decision.retry_after)
            assert limiter.try_acquire("k", 2).allowed


def test_acquire_waits_exactly_on_the_clock(manual_clock: ManualClock) -> None:
    bucket = TokenBucket(4, 2, clock=manual_clock)
    start = manual_clock.monotonic()
    for _ in range(10):
        assert bucket.acquire("k").allowed
    # 2 from the burst, then one every 0.25 s (+1 us of padding per wait)
    assert manual_clock.monotonic() - start == pytest.approx(8 * 0.25, abs=1e-4)


def test_acquire_fails_fast_beyond_the_timeout(manual_clock: ManualClock) -> None:
    bucket = TokenBucket(1, 1, clock=manual_clock)
    bucket.try_acquire("k")
    before = manual_clock.monotonic()
    with pytest.raises(RateLimitExceeded) as info:
        bucket.acquire("k", timeout=0.5)
    assert manual_clock.monotonic() == before  # no sleep at all: the wait would be too long
    assert isinstance(info.value.decision, RateLimitDecision)
    assert info.value.decision.retry_after > 0.5
    assert bucket.acquire("k", timeout=1.5).allowed
    with pytest.raises(ConfigurationError, match="timeout"):
        bucket.acquire("k", timeout=-1)
    with pytest.raises(TypeError, match="timeout"):
        bucket.acquire("k", timeout="1")  # type: ignore[arg-type]


@pytest.mark.parametrize("algo", list(SYNC))
def test_bad_input_is_rejected_and_changes_nothing(algo: str, manual_clock: ManualClock) -> None:
    limiter = SYNC[algo](clock=manual_clock)
    limiter.try_acquire("k", 2)
    before = limiter.peek("k")
    with pytest.raises(ConfigurationError, match="can never be admitted"):
        limiter.try_acquire("k", 4)
    with pytest.raises(ConfigurationError, match="cost"):
        limiter.try_acquire("k", -1)
    for cost in (1.0, 1.5, "1", None, True):
        with pytest.raises(TypeError, match="cost"):
            limiter.try_acquire("k", cost)  # type: ignore[arg-type]
    for key in (b"k", 1, None, ("k",)):
        with pytest.raises(TypeError, match="key"):
            limiter.try_acquire(key)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="key"):
        limiter.try_acquire("")
    with pytest.raises(ConfigurationError, match="can never be admitted"):
        limiter.acquire("k", 4)
    assert limiter.peek("k") == before


def test_constructor_validation() -> None:
    with pytest.raises(ConfigurationError, match="prefix"):
        TokenBucket(1, 1, prefix="a b")
    with pytest.raises(ConfigurationError, match="name"):
        TokenBucket(1, 1, name="x:y")
    with pytest.raises(ConfigurationError, match="on_outage"):
        TokenBucket(1, 1, on_outage="maybe")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="backend"):
        TokenBucket(1, 1, backend=42)
    with pytest.raises(ConfigurationError, match="rate"):
        AsyncTokenBucket(0, 1)
    with pytest.raises(ConfigurationError, match="window"):
        SlidingWindowLog(1, 0)


@given(key=hostile_keys())
def test_hostile_keys_stay_namespaced(key: str) -> None:
    store = MemoryBackend()
    clock = ManualClock(start=1000.0)
    bucket = TokenBucket(1, 2, backend=store, clock=clock, prefix="p")
    assert bucket.try_acquire(key, 2).allowed
    assert not bucket.try_acquire(key).allowed
    assert bucket.try_acquire(key + "x").allowed
    keys = store.keys()
    assert len(keys) == 2
    assert all(k.startswith("p:{") and k.endswith("}:rl.tb.1000000.2") for k in keys)
    assert all(k.count("{") == 1 and k.count("}") == 1 for k in keys)


@pytest.mark.parametrize("algo", list(SYNC))
def test_memory_keys_are_checked_alike_whether_the_store_is_empty_or_not(algo: str) -> None:
    """A key the memory backend accepts (here not UTF-8-encodable, which only Redis refuses) is
    accepted by reset and acquire too, also on a store that holds nothing yet."""
    key = "\ud800"
    limiter = SYNC[algo](clock=ManualClock(start=1000.0))
    limiter.reset(key)  # an empty store
    assert limiter.acquire(key, timeout=0).allowed
    assert limiter.try_acquire(key).remaining == 1
    limiter.reset(key)
    assert limiter.peek(key).remaining == 3
    store = MemoryBackend()
    composite = CompositeLimiter([_tb(backend=store), _log(backend=store)])
    composite.reset(key)
    assert composite.try_acquire([key, key]).allowed


def test_limiters_with_different_settings_do_not_share_state(manual_clock: ManualClock) -> None:
    store = MemoryBackend()
    small = TokenBucket(1, 1, backend=store, clock=manual_clock)
    large = TokenBucket(1, 5, backend=store, clock=manual_clock)
    named = TokenBucket(1, 1, backend=store, clock=manual_clock, name="other")
    assert small.try_acquire("k").allowed
    assert large.try_acquire("k", 5).allowed
    assert named.try_acquire("k").allowed
    assert not small.try_acquire("k").allowed


def test_idle_keys_expire(manual_clock: ManualClock) -> None:
    store = MemoryBackend()
    limiters = [
        TokenBucket(10, 5, backend=store, clock=manual_clock),
        SlidingWindowLog(5, 1.0, backend=store, clock=manual_clock),
        SlidingWindowCounter(5, 1.0, backend=store, clock=manual_clock),
    ]
    for limiter in limiters:
        for i in range(20):
            limiter.try_acquire(f"user{i}", 3)
    assert len(store) == 60
    manual_clock.advance(0.2)
    assert len(store) == 60  # still needed: nothing refilled or left the window yet
    manual_clock.advance(0.15)
    assert len(store) == 40  # the buckets are full again (3 tokens at 10/s): same as absent
    manual_clock.advance(2.0)
    assert len(store) == 0


@pytest.mark.parametrize("algo", ["token_bucket", "log"])
def test_threads_never_over_admit(algo: str) -> None:
    clock = ManualClock(start=1000.0)  # frozen: nothing refills during the test
    limiter: Limiter = (
        TokenBucket(1, 500, clock=clock)
        if algo == "token_bucket"
        else SlidingWindowLog(500, 10.0, clock=clock)
    )
    admitted = []
    barrier = threading.Barrier(8)

    def hammer() -> None:
        barrier.wait()
        admitted.append(sum(limiter.try_acquire("hot").allowed for _ in range(200)))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(admitted) == 500


def test_composite_admits_only_when_all_admit(manual_clock: ManualClock) -> None:
    store = MemoryBackend()
    per_user = TokenBucket(1, 2, backend=store, clock=manual_clock)
    per_window = SlidingWindowLog(3, 10.0, backend=store, clock=manual_clock)
    both = CompositeLimiter([per_user, per_window])
    assert both.try_acquire("alice").allowed
    assert both.try_acquire("alice").allowed
    denied = both.try_acquire("alice")
    assert not denied.allowed
    assert denied.retry_after == pytest.approx(1.0, abs=1e-5)
    # the denial consumed nothing from the log, which still has one unit left
    assert per_window.peek("alice").remaining == 1
    manual_clock.advance(denied.retry_after)
    ok = both.try_acquire("alice")
    assert ok.allowed
    assert ok.remaining == 0
    assert ok.limit in (2, 3)
    blocked = both.try_acquire("alice")
    assert not blocked.allowed
    assert blocked.retry_after == pytest.approx(10.0 - 1.000001, abs=1e-5)  # the log binds
    # one key per limiter
    assert both.try_acquire(["bob", "global"]).allowed
    assert per_window.peek("global").remaining == 2
    assert per_user.peek("bob").remaining == 1
    both.reset("alice")
    assert both.peek("alice").allowed


def test_composite_validation(manual_clock: ManualClock) -> None:
    store = MemoryBackend()
    a = TokenBucket(1, 2, backend=store, clock=manual_clock)
    with pytest.raises(ConfigurationError, match="share one backend"):
        CompositeLimiter([a, TokenBucket(1, 3, clock=manual_clock)])
    with pytest.raises(ConfigurationError, match="share one clock"):
        CompositeLimiter([a, TokenBucket(1, 3, backend=store)])
    with pytest.raises(ConfigurationError, match="empty"):
        CompositeLimiter([])
    with pytest.raises(ConfigurationError, match="name="):
        CompositeLimiter([a, TokenBucket(1, 2, backend=store, clock=manual_clock)])
    twin = TokenBucket(1, 2, backend=store, clock=manual_clock, name="global")
    assert CompositeLimiter([a, twin]).try_acquire("y").allowed
    with pytest.raises(TypeError, match="limiter"):
        CompositeLimiter([AsyncTokenBucket(1, 2)])  # type: ignore[list-item]
    both = CompositeLimiter([a, SlidingWindowCounter(5, 1.0, backend=store, clock=manual_clock)])
    with pytest.raises(ConfigurationError, match="one per limiter"):
        both.try_acquire(["x"])
    with pytest.raises(ConfigurationError, match="never be admitted"):
        both.try_acquire("x", 3)
    assert both.try_acquire("x", 2).allowed
    with pytest.raises(RateLimitExceeded):
        both.acquire("x", 2, timeout=0.1)
    assert a.peek("x").remaining == 0


async def test_async_twins_share_the_core(manual_clock: ManualClock) -> None:
    store = MemoryBackend()
    bucket = AsyncTokenBucket(2, 2, backend=store, clock=manual_clock)
    sync_view = TokenBucket(2, 2, backend=store, clock=manual_clock)
    assert (await bucket.try_acquire("k")).allowed
    assert (await bucket.try_acquire("k")).allowed
    denied = await bucket.try_acquire("k")
    assert not denied.allowed
    assert not sync_view.peek("k").allowed  # same store, same state
    assert (await bucket.acquire("k", timeout=1.0)).allowed
    with pytest.raises(RateLimitExceeded):
        await bucket.acquire("k", timeout=0.1)
    await bucket.reset("k")
    assert (await bucket.peek("k")).remaining == 2
    log = AsyncSlidingWindowLog(2, 1.0, clock=manual_clock)
    counter = AsyncSlidingWindowCounter(2, 1.0, clock=manual_clock, backend=log.backend)
    both = AsyncCompositeLimiter([log, counter])
    assert (await both.try_acquire("k", 2)).allowed
    assert not (await both.peek("k")).allowed
    assert (await both.acquire("k", timeout=2.0)).allowed
    await both.reset("k")
    assert (await both.peek("k", 2)).allowed
    assert math.isclose((await log.peek("k")).remaining, 2)


@pytest.mark.parametrize("algo", list(SYNC))
@given(
    key=st.one_of(st.none(), st.integers(), st.binary(), st.just(""), st.lists(st.text())),
    cost=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(),
        st.none(),
        st.booleans(),
        st.integers(max_value=-1),
        st.integers(min_value=4),
    ),
)
def test_any_bad_argument_raises_clearly_and_changes_nothing(
    algo: str, key: Any, cost: Any
) -> None:
    clock = ManualClock(start=1000.0)
    limiter = SYNC[algo](clock=clock)
    limiter.try_acquire("k", 2)
    before = limiter.peek("k")
    with pytest.raises((TypeError, ValueError)) as info:
        limiter.try_acquire(key, 1)
    assert "key" in str(info.value)
    with pytest.raises((TypeError, ValueError)) as info:
        limiter.try_acquire("k", cost)
    assert "cost" in str(info.value)
    assert limiter.peek("k") == before


def _slow_refill(algo: str, limit: int, **kw: Any) -> Limiter:
    """A limiter admitting ``limit`` at once, then nothing for a while (1/s or a 10 s window)."""
    if algo == "token_bucket":
        return TokenBucket(1, limit, **kw)
    return (SlidingWindowLog if algo == "log" else SlidingWindowCounter)(limit, 10.0, **kw)


class _YieldingClock(ManualClock):
    """A frozen clock whose every reading hands the GIL to another thread."""

    def monotonic(self) -> float:
        time.sleep(0)
        return super().monotonic()


@pytest.mark.parametrize("algo", ["token_bucket", "log", "counter"])
def test_threads_preempted_inside_the_fast_path_never_over_admit(
    algo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The clock is read while the backend lock's token is out, and yields there: the other
    # threads find the token gone and take the general path, which waits for the lock. Counted
    # through the backend's mutex wait, to prove that route ran.
    waits = itertools.count()
    real_wait = TokenMutex.wait

    def counting_wait(self: TokenMutex) -> None:
        next(waits)
        real_wait(self)

    monkeypatch.setattr(TokenMutex, "wait", counting_wait)
    clock = _YieldingClock(start=1000.0)
    limiter = _slow_refill(algo, 300, clock=clock)
    limiter.try_acquire("hot")  # remembered: the next calls take the fast path
    admitted = []
    barrier = threading.Barrier(8)

    def hammer() -> None:
        barrier.wait()
        admitted.append(sum(limiter.try_acquire("hot").allowed for _ in range(100)))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(admitted) == 299  # 300 in all, one taken before the threads started
    assert next(waits) > 0


@pytest.mark.parametrize("algo", ["token_bucket", "log", "counter"])
def test_a_decision_inside_a_held_backend_lock_reenters_it(algo: str) -> None:
    # A caller composing its own atomic step holds the backend lock and decides inside it: the
    # fast path finds the token out and must not wait for it (the holder is this thread).
    backend = MemoryBackend()
    clock = ManualClock(start=5.0)
    limiter = _slow_refill(algo, 2, backend=backend, clock=clock)
    limiter.try_acquire("k")
    with backend.lock:
        second = limiter.try_acquire("k")
        third = limiter.try_acquire("k")
    assert (second.allowed, second.remaining) == (True, 0)
    assert not third.allowed
    assert limiter.try_acquire("k").retry_after == third.retry_after  # and the lock is free


@pytest.mark.parametrize("algo", ["token_bucket", "log", "counter"])
def test_an_interrupt_as_the_fast_path_takes_the_lock_leaves_it_free(algo: str) -> None:
    # CPython raises KeyboardInterrupt at its next check for pending calls, which follows the
    # token's take(): raised there, with the token taken. The limiter keeps working after it.
    backend = MemoryBackend()
    interrupted = InterruptedTake(backend.lock.take, armed=False)
    backend.lock.take = interrupted  # before the hot path binds it
    clock = ManualClock(start=5.0)
    limiter = _slow_refill(algo, 3, backend=backend, clock=clock)
    assert limiter.try_acquire("k").remaining == 2  # remembered: the next call is the fast path
    interrupted.armed = True
    with pytest.raises(KeyboardInterrupt):
        limiter.try_acquire("k")
    assert not interrupted.armed  # the interrupt came from the hot path's take()
    assert limiter.try_acquire("k").remaining == 1  # the interrupted call consumed nothing
    with backend.lock:  # and the lock is free
        pass
