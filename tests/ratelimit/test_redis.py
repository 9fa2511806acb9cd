"""The limiters on real Redis (standalone and Cluster): the Lua port, differential tests against
the memory backend, keys, TTLs, restarts, outages, composites and the async twins."""

from __future__ import annotations

import enum
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsprims import (
    AsyncCompositeLimiter,
    AsyncSlidingWindowLog,
    AsyncTokenBucket,
    BackendUnavailable,
    CompositeLimiter,
    ConfigurationError,
    ManualClock,
    MemoryBackend,
    RateLimitExceeded,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
    async_backend_from_url,
    backend_from_url,
)
from dsprims.backends import namespaced_key
from dsprims.backends.redis import RedisBackend
from dsprims.ratelimit.core import CounterParams, LogParams, TokenBucketParams
from dsprims.testing.servers import RedisServerProcess
from dsprims.testing.strategies import hostile_keys
from tests.ratelimit.vectors import BASE_US, VECTORS

pytestmark = pytest.mark.redis

Limiter = TokenBucket | SlidingWindowCounter | SlidingWindowLog
FACTORIES: dict[str, Callable[..., Limiter]] = {
    "token_bucket": lambda **kw: TokenBucket(7, 4, **kw),
    "counter": lambda **kw: SlidingWindowCounter(4, 0.35, **kw),
    "log": lambda **kw: SlidingWindowLog(4, 0.35, **kw),
}


def _spec(algo: str, params: dict[str, Any]) -> tuple[list[Any], int]:
    if algo == "token_bucket":
        tb = TokenBucketParams(**params)
        return ["t", tb.interval_us, tb.tolerance_us, tb.capacity], 1
    if algo == "counter":
        cp = CounterParams(**params)
        return ["c", cp.limit, cp.window_ticks, cp.tick_us], 1
    lp = LogParams(**params)
    return ["l", lp.limit, lp.window_us, 0], 2


@pytest.fixture(params=["redis", "redis_cluster"])
def rbackend(request: pytest.FixtureRequest) -> RedisBackend:
    fixture = "redis_backend" if request.param == "redis" else "redis_cluster_backend"
    backend: RedisBackend = request.getfixturevalue(fixture)
    return backend


def _my_keys(client: Any, prefix: str) -> list[bytes]:
    return [k for k in client.scan_iter(match=f"{prefix}:*", count=1000)]


# -- the Lua port ------------------------------------------------------------------------------


@pytest.mark.parametrize(("algo", "params", "steps"), VECTORS, ids=[v[0] for v in VECTORS])
def test_lua_reproduces_the_golden_vectors(
    rbackend: RedisBackend, key_prefix: str, algo: str, params: dict[str, Any], steps: list[Any]
) -> None:
    spec, nkeys = _spec(algo, params)
    base = namespaced_key(key_prefix, "golden", "x")
    keys = [base, base + ".n"][:nkeys]
    got = []
    for offset, cost, consume, _expected in steps:
        args = [BASE_US + offset, 1 if consume else 0, 0, 1, *spec, cost]
        reply = rbackend.evalsha("ratelimit_decide", keys, args)
        assert int(reply[4]) == BASE_US + offset  # the time the decision was taken at
        got.append(tuple(int(v) for v in reply[:4]))
    assert got == [expected for *_, expected in steps]


@pytest.mark.parametrize("algo", list(FACTORIES))
@given(
    steps=st.lists(
        st.tuples(
            # boundaries matter: steps of 50 ms land exactly on the 350 ms windows
            st.one_of(
                st.sampled_from([0, 1, 49_999, 50_000, 100_000, 350_000]),
                st.integers(min_value=0, max_value=250_000),
            ),
            st.integers(min_value=0, max_value=4),
            st.booleans(),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_memory_and_redis_decide_identically(
    rbackend: RedisBackend, key_prefix: str, algo: str, steps: list[tuple[int, int, bool]]
) -> None:
    """The differential test: the same (time, cost) sequence, decision for decision."""
    mem_clock, redis_clock = ManualClock(start=1000.0), ManualClock(start=1000.0)
    memory = FACTORIES[algo](clock=mem_clock)
    remote = FACTORIES[algo](clock=redis_clock, backend=rbackend, prefix=key_prefix)
    key = f"diff-{uuid.uuid4().hex}"
    for dt, cost, consume in steps:
        mem_clock.advance(dt / 1e6)
        redis_clock.advance(dt / 1e6)
        if consume:
            assert remote.try_acquire(key, cost) == memory.try_acquire(key, cost)
        else:
            assert remote.peek(key, cost) == memory.peek(key, cost)


@given(
    steps=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=600_000),  # time between calls, us
            st.integers(min_value=0, max_value=3),  # cost
            st.sampled_from([None, 0.0, 0.1, 0.5]),  # timeout
        ),
        min_size=1,
        max_size=15,
    )
)
def test_blocking_acquire_books_identically(
    redis_backend: RedisBackend, key_prefix: str, steps: list[tuple[int, int, float | None]]
) -> None:
    """The token bucket's acquire (a reservation) on memory and Redis, with time pinned."""
    mem_clock, redis_clock = ManualClock(start=1000.0), ManualClock(start=1000.0)
    memory = TokenBucket(5, 3, clock=mem_clock)
    remote = TokenBucket(5, 3, clock=redis_clock, backend=redis_backend, prefix=key_prefix)
    key = f"book-{uuid.uuid4().hex}"
    for dt, cost, timeout in steps:
        mem_clock.advance(dt / 1e6)
        redis_clock.advance(dt / 1e6)
        outcomes = []
        for limiter in (memory, remote):
            try:
                outcomes.append(limiter.acquire(key, cost, timeout=timeout))
            except RateLimitExceeded as exc:
                outcomes.append(exc.decision)
        assert outcomes[0] == outcomes[1]
        assert mem_clock.monotonic() == redis_clock.monotonic()  # slept the same


# -- server time, keys and TTLs ----------------------------------------------------------------


SLOW: dict[str, Callable[..., Limiter]] = {
    # real time passes in these tests: slow limits keep them deterministic
    "token_bucket": lambda **kw: TokenBucket(0.1, 4, **kw),
    "counter": lambda **kw: SlidingWindowCounter(4, 60.0, **kw),
    "log": lambda **kw: SlidingWindowLog(4, 60.0, **kw),
}


@pytest.mark.parametrize("algo", list(SLOW))
def test_server_time_by_default(rbackend: RedisBackend, key_prefix: str, algo: str) -> None:
    limiter = SLOW[algo](backend=rbackend, prefix=key_prefix)
    assert [limiter.try_acquire("k").allowed for _ in range(5)] == [True] * 4 + [False]
    denied = limiter.try_acquire("k")
    assert 0 < denied.retry_after <= 120
    assert not limiter.peek("k").allowed
    # the same limiter pinned to a client clock a day ahead would see a refilled limit: the
    # default reads the server's TIME instead, whatever the client's clock says
    ahead = ManualClock(start=time.time() + 86400)
    pinned = SLOW[algo](backend=rbackend, prefix=key_prefix, clock=ahead)
    assert pinned.peek("k").allowed


@pytest.mark.parametrize("algo", list(SLOW))
def test_every_key_has_a_positive_ttl(rbackend: RedisBackend, key_prefix: str, algo: str) -> None:
    limiter = SLOW[algo](backend=rbackend, prefix=key_prefix)
    for i in range(20):
        limiter.try_acquire(f"user-{i}", 2)
    keys = _my_keys(rbackend.client, key_prefix)
    assert len(keys) == 20 * (2 if algo == "log" else 1)
    ttls = [rbackend.client.pttl(k) for k in keys]
    assert all(0 < ttl <= 120_002 for ttl in ttls), ttls


def test_pinned_clock_ttls_get_the_grace(redis_backend: RedisBackend, key_prefix: str) -> None:
    clock = ManualClock(start=1000.0)
    bucket = TokenBucket(1, 2, backend=redis_backend, clock=clock, prefix=key_prefix)
    bucket.try_acquire("k", 2)
    (key,) = _my_keys(redis_backend.client, key_prefix)
    # 2 s of pinned time still needed + 1 h of grace for a clock that lags real time
    assert 3600_000 < redis_backend.client.pttl(key) <= 3602_002
    clock.advance(1.0)
    assert bucket.try_acquire("k").allowed
    assert not bucket.try_acquire("k").allowed


@given(key=hostile_keys())
def test_hostile_keys_work_and_stay_namespaced(redis_backend: RedisBackend, key: str) -> None:
    prefix = f"h{uuid.uuid4().hex[:12]}"
    log = SlidingWindowLog(2, 60.0, backend=redis_backend, prefix=prefix)
    assert log.try_acquire(key, 2).allowed
    assert not log.try_acquire(key).allowed
    assert log.try_acquire(key + "}").allowed
    keys = _my_keys(redis_backend.client, prefix)
    assert len(keys) == 4
    assert all(k.startswith(f"{prefix}:{{".encode()) for k in keys)
    log.reset(key)
    log.reset(key + "}")
    assert _my_keys(redis_backend.client, prefix) == []


@pytest.mark.parametrize("algo", list(FACTORIES))
def test_bad_input_changes_nothing_on_redis(
    redis_backend: RedisBackend, key_prefix: str, algo: str
) -> None:
    limiter = FACTORIES[algo](backend=redis_backend, prefix=key_prefix, clock=ManualClock(1000.0))
    limiter.try_acquire("k", 3)
    before = limiter.peek("k")
    with pytest.raises(ConfigurationError, match="never be admitted"):
        limiter.try_acquire("k", 5)
    with pytest.raises(TypeError, match="cost"):
        limiter.try_acquire("k", 1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key"):
        limiter.try_acquire(b"k")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="UTF-8"):
        limiter.try_acquire("lone \ud800 surrogate")
    assert limiter.peek("k") == before


# -- restarts and script cache -----------------------------------------------------------------


def test_decisions_resume_after_script_flush_and_restart(
    redis_server: RedisServerProcess, key_prefix: str
) -> None:
    backend = backend_from_url(redis_server.url, timeout=1.0)
    try:
        bucket = TokenBucket(1000, 1000, backend=backend, prefix=key_prefix)
        assert bucket.try_acquire("k").allowed
        backend.client.script_flush()
        assert bucket.try_acquire("k").allowed  # NOSCRIPT -> EVAL, no failure
        redis_server.restart()
        results = [bucket.try_acquire("k").allowed for _ in range(5)]
        assert results == [True] * 5  # the first call after the restart reconnects
    finally:
        backend.close()


# -- outages -----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["kill", "freeze"])
def test_outage_policies(
    redis_server: RedisServerProcess, key_prefix: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend = backend_from_url(redis_server.url, timeout=0.5)
    try:
        closed = TokenBucket(0.1, 2, backend=backend, prefix=key_prefix)
        opened = TokenBucket(0.1, 2, backend=backend, prefix=key_prefix, on_outage="allow")
        local = TokenBucket(0.1, 2, backend=backend, prefix=key_prefix, on_outage="local")
        assert closed.try_acquire("k").allowed
        assert local.try_acquire("k2").allowed
        if how == "kill":
            redis_server.kill()
        else:
            redis_server.freeze()
        try:
            started = time.monotonic()
            with pytest.raises(BackendUnavailable):
                closed.try_acquire("k")
            assert time.monotonic() - started < 0.5 + 1.0
            fail_open = [opened.try_acquire("k") for _ in range(2)]
            assert all(d.allowed and d.degraded for d in fail_open)
            with caplog.at_level(logging.WARNING, logger="dsprims.ratelimit.limiters"):
                fallback = [local.try_acquire("k") for _ in range(3)]
            assert [d.allowed for d in fallback] == [True, True, False]
            assert all(d.degraded for d in fallback)
            local_logs = [r for r in caplog.records if "on_outage='local'" in r.getMessage()]
            assert len(local_logs) == 1  # once per outage, not once per decision
            # the blocking acquire follows the same policy
            with pytest.raises(BackendUnavailable):
                closed.acquire("k", timeout=0.1)
            assert local.acquire("other", timeout=0).degraded
        finally:
            if how == "freeze":
                redis_server.thaw()
            else:
                redis_server.restart()
        for _ in range(3):  # back on Redis: not degraded
            try:
                decision = closed.try_acquire("k2")
                break
            except BackendUnavailable:  # a frozen socket may need one fresh connection
                continue
        assert not decision.degraded
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="dsprims.ratelimit.limiters"):
            for _ in range(3):
                if not local.try_acquire("k3").degraded:
                    break
        assert any("answers again" in r.getMessage() for r in caplog.records)
    finally:
        backend.close()


# -- composites --------------------------------------------------------------------------------


def test_composite_is_one_evalsha_and_consumes_nothing_on_denial(
    redis_backend: RedisBackend, key_prefix: str
) -> None:
    commands: list[str] = []
    execute = redis_backend._execute

    def counting(*args: Any, **kwargs: Any) -> Any:
        commands.append(str(args[0]))
        return execute(*args, **kwargs)

    clock = ManualClock(start=1000.0)
    kw: dict[str, Any] = {"backend": redis_backend, "prefix": key_prefix, "clock": clock}
    per_user = TokenBucket(1, 2, **kw)
    per_minute = SlidingWindowLog(3, 60.0, **kw)
    hourly = SlidingWindowCounter(100, 3600.0, **kw)
    all_three = CompositeLimiter([per_user, per_minute, hourly])
    # A peek consumes nothing but loads the script (EVAL on NOSCRIPT when this test runs first),
    # so the count below does not depend on the order the tests run in.
    assert all_three.peek("u").allowed
    redis_backend._execute = counting
    assert [all_three.try_acquire("u").allowed for _ in range(3)] == [True, True, False]
    assert commands == ["EVALSHA"] * 3
    assert per_minute.peek("u").remaining == 1
    assert hourly.peek("u").remaining == 98
    clock.advance(1.0)
    assert all_three.try_acquire(["u", "u", "everyone"]).allowed  # same slot not needed here
    assert not all_three.try_acquire("u").allowed  # the log binds now
    assert hourly.peek("everyone").remaining == 99


def test_int_subclass_costs_reach_redis_as_ints(
    redis_backend: RedisBackend, key_prefix: str
) -> None:
    """A cost that is an int subclass (an ``IntEnum``) is used as its int, alone and composed."""

    class Cost(enum.IntEnum):
        TWO = 2

    kw: dict[str, Any] = {"backend": redis_backend, "prefix": key_prefix}
    bucket = TokenBucket(1, 5, **kw)
    assert bucket.try_acquire("solo", Cost.TWO).remaining == 3
    both = CompositeLimiter([TokenBucket(1, 5, **kw), SlidingWindowLog(3, 10.0, **kw)])
    assert both.try_acquire("k", Cost.TWO).remaining == 1
    assert not both.try_acquire("k", Cost.TWO).allowed


def test_composite_on_cluster(redis_cluster_backend: RedisBackend, key_prefix: str) -> None:
    kw: dict[str, Any] = {"backend": redis_cluster_backend, "prefix": key_prefix}
    both = CompositeLimiter([TokenBucket(5, 5, **kw), SlidingWindowLog(3, 10.0, **kw)])
    assert [both.try_acquire("same-key").allowed for _ in range(4)] == [True] * 3 + [False]


def _names_in_slot_order(limiters: list[Any], prefix: str) -> tuple[str, str]:
    """Two keys whose first limiter's key sorts before the second's by cluster slot."""
    from redis.crc import key_slot

    def slot(limiter: Any, name: str) -> int:
        return key_slot(limiter._redis_keys(name)[0].encode())

    for i in range(100):
        first, second = f"user-{i}", "global"
        if slot(limiters[0], first) < slot(limiters[1], second):
            return first, second
    raise AssertionError("no key pair in slot order")  # pragma: no cover


@pytest.mark.parametrize("algo", list(FACTORIES))
def test_cross_slot_composite_on_cluster_refunds_on_denial(
    redis_cluster_backend: RedisBackend, key_prefix: str, algo: str
) -> None:
    """Keys in different slots: one script per slot; a later denial refunds earlier groups."""
    clock = ManualClock(start=1000.0)
    kw: dict[str, Any] = {"backend": redis_cluster_backend, "prefix": key_prefix, "clock": clock}
    first = FACTORIES[algo](**kw)  # limit 4; decided first (its key has the lower slot)
    tight = TokenBucket(1, 2, **kw)  # the global limit, which denies the third request
    user, everyone = _names_in_slot_order([first, tight], key_prefix)
    both = CompositeLimiter([first, tight])
    assert both.try_acquire([user, everyone]).allowed
    assert both.try_acquire([user, everyone]).allowed
    before = first.peek(user)
    assert before.remaining == 2
    denied = both.try_acquire([user, everyone])
    assert not denied.allowed
    assert denied.retry_after == pytest.approx(1.0, abs=1e-5)
    assert first.peek(user) == before  # consumed by the first group, then refunded
    clock.advance(1.0)
    assert both.try_acquire([user, everyone]).allowed
    assert first.peek(user).remaining == 3  # refilled or out of the window, then one taken


def test_composite_with_the_local_fallback(
    redis_server: RedisServerProcess, key_prefix: str
) -> None:
    backend = backend_from_url(redis_server.url, timeout=0.5)
    try:
        kw: dict[str, Any] = {"backend": backend, "prefix": key_prefix}
        both = CompositeLimiter(
            [TokenBucket(0.1, 2, **kw), SlidingWindowLog(5, 10.0, **kw)], on_outage="local"
        )
        redis_server.kill()
        try:
            results = [both.try_acquire("k") for _ in range(3)]
        finally:
            redis_server.restart()
        assert [d.allowed for d in results] == [True, True, False]
        assert all(d.degraded for d in results)
    finally:
        backend.close()


# -- async -------------------------------------------------------------------------------------


@pytest.fixture
async def async_redis(redis_server: RedisServerProcess) -> Any:
    backend = async_backend_from_url(redis_server.url, timeout=1.0)
    yield backend
    await backend.aclose()


async def test_async_twins_on_redis(async_redis: Any, key_prefix: str) -> None:
    clock = ManualClock(start=1000.0)
    memory_twin = TokenBucket(3, 3, clock=ManualClock(start=1000.0))
    bucket = AsyncTokenBucket(3, 3, backend=async_redis, prefix=key_prefix, clock=clock)
    for cost in (1, 2, 1, 0, 3):
        assert await bucket.try_acquire("k", cost) == memory_twin.try_acquire("k", cost)
    assert (await bucket.acquire("k", timeout=1.0)).allowed
    log = AsyncSlidingWindowLog(2, 1.0, backend=async_redis, prefix=key_prefix, clock=clock)
    both = AsyncCompositeLimiter([bucket, log])
    await bucket.reset("k")
    assert (await both.try_acquire("k", 2)).allowed
    assert not (await both.peek("k")).allowed
    server_time = AsyncTokenBucket(0.01, 1, backend=async_redis, prefix=key_prefix)
    assert (await server_time.try_acquire("s")).allowed
    assert not (await server_time.try_acquire("s")).allowed


async def test_async_outage_fails_closed(redis_server: RedisServerProcess, key_prefix: str) -> None:
    backend = async_backend_from_url(redis_server.url, timeout=0.5)
    try:
        bucket = AsyncTokenBucket(3, 3, backend=backend, prefix=key_prefix)
        local = AsyncTokenBucket(0.1, 1, backend=backend, prefix=key_prefix, on_outage="local")
        assert (await bucket.try_acquire("k")).allowed
        redis_server.kill()
        try:
            with pytest.raises(BackendUnavailable):
                await bucket.try_acquire("k")
            assert [(await local.try_acquire("k")).allowed for _ in range(2)] == [True, False]
        finally:
            redis_server.restart()
    finally:
        await backend.aclose()


@pytest.mark.parametrize("decode", [True, False])
def test_clients_with_decoded_replies(
    redis_server: RedisServerProcess, key_prefix: str, decode: bool
) -> None:
    backend = RedisBackend(redis_server.client(decode_responses=decode))
    try:
        clock = ManualClock(start=1000.0)
        limiters = [factory(backend=backend, prefix=key_prefix) for factory in SLOW.values()]
        limiters.append(
            SlidingWindowLog(4, 0.35, backend=backend, prefix=key_prefix, clock=clock, name="p")
        )
        for limiter in limiters:
            assert [limiter.try_acquire("k").allowed for _ in range(5)] == [True] * 4 + [False]
        both = CompositeLimiter(limiters[:2])
        assert not both.try_acquire("k").allowed
    finally:
        backend.client.close()


def test_sync_and_async_backends_are_not_mixed(
    redis_backend: RedisBackend, redis_server: RedisServerProcess
) -> None:
    with pytest.raises(TypeError, match="AsyncTokenBucket"):
        TokenBucket(1, 1, backend=async_backend_from_url(redis_server.url))
    with pytest.raises(TypeError, match="async backend"):
        AsyncTokenBucket(1, 1, backend=redis_backend)


def test_memory_backend_instance_is_not_redis() -> None:
    # a composite cannot mix a memory limiter with a Redis one
    with pytest.raises(ConfigurationError):
        CompositeLimiter([TokenBucket(1, 1, backend=MemoryBackend()), TokenBucket(1, 2)])


async def test_async_cross_slot_composite_on_cluster(redis_cluster: Any, key_prefix: str) -> None:
    backend = async_backend_from_url(redis_cluster.url, timeout=1.0)
    try:
        clock = ManualClock(start=1000.0)
        kw: dict[str, Any] = {"backend": backend, "prefix": key_prefix, "clock": clock}
        per_user, everyone = AsyncTokenBucket(1, 3, **kw), AsyncTokenBucket(1, 1, **kw)
        user, shared = _names_in_slot_order([per_user, everyone], key_prefix)
        both = AsyncCompositeLimiter([per_user, everyone])
        assert (await both.try_acquire([user, shared])).allowed
        assert not (await both.try_acquire([user, shared])).allowed
        assert (await per_user.peek(user)).remaining == 2  # refunded
    finally:
        await backend.aclose()
