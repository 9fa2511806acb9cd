"""Rate limiting against limits, throttled-py and pyrate-limiter, and against the round-trip floor.

Goals (issue 4), read as the largest acceptable ``ours / this`` ratio:

* memory ``try_acquire`` (thread-safe) at least 4x faster than the fastest peer's in-memory
  decision: goal 0.25 on each peer row. The first group is traffic below the limit (the
  common case); the "draining" group makes every decision different. Both run interleaved
  (``compare``) and carry a floor row without a goal: a mutex, the clock read, one dict entry
  and the decision tuple alone, i.e. what any thread-safe decision returning a
  ``RateLimitDecision`` costs before doing any work;
* the exact sliding log costs the same with 100 and with 100 000 live entries (two groups;
  compare the two "ours" rows), and beats limits' moving window, which grows with them;
* Redis ``try_acquire`` (sync and asyncio, composite too) <= 1.2x a bare EVALSHA of the same
  script on the same client;
* blocking ``acquire`` reaches >= 98% of the configured rate: its time for 100 admissions is at
  most 1/0.98 of the ideal 100/rate (the floor row sleeps exactly that long).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from functools import partial
from typing import Any

import pytest
from limits import RateLimitItemPerHour, RateLimitItemPerSecond, storage, strategies
from pyrate_limiter import Duration, InMemoryBucket, Limiter, Rate
from throttled import Throttled, rate_limiter
from throttled import store as throttled_store

from benchmarks.conftest import Contender
from dsprims import (
    AsyncTokenBucket,
    CompositeLimiter,
    RateLimitDecision,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
    async_backend_from_url,
    backend_from_url,
)
from dsprims._mutex import TokenMutex
from dsprims.backends._lua import lua_script
from dsprims.ratelimit.limiters import SCRIPT

BIG = 10**9  # limits high enough that every benchmarked call is admitted

# -- memory ------------------------------------------------------------------------------------
# The goal groups run interleaved (compare): every contender is a functools.partial of a
# pre-bound method and its arguments, so each pays the same (C-level) call overhead and no extra
# Python frame of a lambda around it.

MEM = "ratelimit: memory try_acquire (admitted)"


def _decision_floor() -> Any:
    """What any thread-safe in-memory decision returning a RateLimitDecision must do, alone.

    Take and give back the cheapest mutex we know (the memory backend's: a token in a deque),
    read the clock, read and write one dict entry, build the decision: no validation, no
    arithmetic.
    """
    mutex = TokenMutex()
    take, give, waiters = mutex.pop, mutex.append, mutex.waiters
    mono = time.monotonic
    table: dict[str, list[Any]] = {"user-1": [0, 0.0, None]}
    make = tuple.__new__

    def floor() -> RateLimitDecision:
        take()
        try:
            t = mono()
            entry = table["user-1"]
            entry[1] = t
            return make(RateLimitDecision, (True, 1, 0.0, t, 1, False))  # type: ignore[no-any-return]
        finally:
            give(None)
            if waiters:
                mutex.wake()

    return floor


def test_memory(compare: Any) -> None:
    bucket = TokenBucket(1e6, BIG)
    ours = bucket.try_acquire
    ours("user-1")
    fixed = strategies.FixedWindowRateLimiter(storage.MemoryStorage()).hit
    sliding = strategies.SlidingWindowCounterRateLimiter(storage.MemoryStorage()).hit
    item = RateLimitItemPerSecond(BIG)
    quota = rate_limiter.per_sec(BIG, burst=BIG)
    gcra = Throttled(using="gcra", quota=quota, store=throttled_store.MemoryStore()).limit
    tb = Throttled(using="token_bucket", quota=quota, store=throttled_store.MemoryStore()).limit
    pyrate = Limiter(InMemoryBucket([Rate(BIG, Duration.SECOND)])).try_acquire
    compare(
        MEM,
        [
            Contender("ours", "dsprims TokenBucket (GCRA)", partial(ours, "user-1")),
            Contender("peer", "limits fixed window", partial(fixed, item, "user-1"), 0.25),
            Contender(
                "peer", "limits sliding window counter", partial(sliding, item, "user-1"), 0.25
            ),
            Contender("peer", "throttled-py gcra", partial(gcra, "user-1"), 0.25),
            Contender("peer", "throttled-py token_bucket", partial(tb, "user-1"), 0.25),
            Contender(
                "peer", "pyrate-limiter in-memory", partial(pyrate, "user-1", 1, False), 0.25
            ),
            Contender(
                "floor", "mutex + clock + dict entry + RateLimitDecision alone", _decision_floor()
            ),
        ],
    )


DRAIN = "ratelimit: memory try_acquire, draining bucket (no two decisions alike)"


def test_memory_draining(compare: Any) -> None:
    bucket = TokenBucket(1, BIG)  # every call takes a token: remaining changes every time
    ours = bucket.try_acquire
    ours("user-1")
    fixed = strategies.FixedWindowRateLimiter(storage.MemoryStorage()).hit
    item = RateLimitItemPerHour(BIG)
    compare(
        DRAIN,
        [
            Contender("ours", "dsprims TokenBucket (GCRA)", partial(ours, "user-1")),
            Contender("peer", "limits fixed window", partial(fixed, item, "user-1"), 0.25),
            Contender(
                "floor", "mutex + clock + dict entry + RateLimitDecision alone", _decision_floor()
            ),
        ],
    )


def test_memory_sliding_counter(compare: Any) -> None:
    counter = SlidingWindowCounter(BIG, 1.0)
    ours = counter.try_acquire
    ours("user-1")
    sliding = strategies.SlidingWindowCounterRateLimiter(storage.MemoryStorage()).hit
    item = RateLimitItemPerSecond(BIG)
    compare(
        "ratelimit: memory sliding-window counter try_acquire",
        [
            Contender("ours", "dsprims SlidingWindowCounter", partial(ours, "user-1")),
            Contender("peer", "limits sliding window counter", partial(sliding, item, "user-1")),
        ],
        budget_seconds=1.0,
    )


# -- the exact log with many live entries ------------------------------------------------------


@pytest.mark.parametrize("live", [100, 100_000])
def test_log(compare: Any, live: int) -> None:
    log = SlidingWindowLog(BIG, 3600.0)
    for _ in range(live):
        log.try_acquire("user-1")
    ours = log.try_acquire
    limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
    item = RateLimitItemPerHour(10**7)
    for _ in range(live):
        limiter.hit(item, "user-1")
    moving = limiter.hit
    compare(
        f"ratelimit: sliding log, {live} live entries",
        [
            Contender("ours", "dsprims SlidingWindowLog", partial(ours, "user-1")),
            Contender("peer", "limits moving window", partial(moving, item, "user-1")),
        ],
        budget_seconds=1.0,
    )


# -- Redis -------------------------------------------------------------------------------------

RDS = "ratelimit: Redis try_acquire"


def _evalsha_floor(client: Any, keys: list[str], args: list[Any]) -> Contender:
    """The floor of a sync Redis group: redis-py's bare ``EVALSHA`` of the same script call."""
    script = lua_script(SCRIPT)
    client.script_load(script.source)
    return Contender(
        "floor",
        "bare redis-py evalsha (same script)",
        lambda: client.evalsha(script.sha, len(keys), *keys, *args),
        goal=1.2,
    )


def test_redis(redis_server: Any, compare: Any) -> None:
    backend = backend_from_url(redis_server.url)
    client = backend.client
    bucket = TokenBucket(1e6, BIG, backend=backend, prefix=f"b{uuid.uuid4().hex[:8]}")
    keys, args = bucket._redis_keys("user-1"), bucket._script_args(1, True)
    fixed = strategies.FixedWindowRateLimiter(storage.RedisStorage(redis_server.url))
    item = RateLimitItemPerSecond(BIG)
    throttle = Throttled(
        using="gcra",
        quota=rate_limiter.per_sec(BIG, burst=BIG),
        store=throttled_store.RedisStore(server=redis_server.url),
    )
    compare(
        RDS,
        [
            Contender("ours", "dsprims TokenBucket", lambda: bucket.try_acquire("user-1")),
            _evalsha_floor(client, keys, args),
            Contender("peer", "limits fixed window (redis)", lambda: fixed.hit(item, "user-1")),
            Contender("peer", "throttled-py gcra (redis)", lambda: throttle.limit("user-1")),
        ],
    )
    backend.close()


COMP = "ratelimit: Redis composite of 2 limits"


def test_redis_composite(redis_server: Any, compare: Any) -> None:
    backend = backend_from_url(redis_server.url)
    client = backend.client
    kw: dict[str, Any] = {"backend": backend, "prefix": f"b{uuid.uuid4().hex[:8]}"}
    both = CompositeLimiter([TokenBucket(1e6, BIG, **kw), TokenBucket(1e5, BIG, **kw)])
    keys, args = both._script([0, 1], ["user-1", "user-1"], 1, 1)
    compare(
        COMP,
        [
            Contender("ours", "dsprims CompositeLimiter", lambda: both.try_acquire("user-1")),
            _evalsha_floor(client, keys, args),
        ],
    )
    backend.close()


# -- asyncio Redis ------------------------------------------------------------------------------

ASY = "ratelimit: async Redis try_acquire"


def test_async_redis(redis_server: Any, compare: Any) -> None:
    loop = asyncio.new_event_loop()
    backend = async_backend_from_url(redis_server.url)
    bucket = AsyncTokenBucket(1e6, BIG, backend=backend, prefix=f"b{uuid.uuid4().hex[:8]}")
    script = lua_script(SCRIPT)
    keys, args = bucket._redis_keys("user-1"), bucket._script_args(1, True)
    loop.run_until_complete(backend.client.script_load(script.source))

    async def ours() -> None:
        await bucket.try_acquire("user-1")

    async def bare() -> None:
        await backend.client.evalsha(script.sha, len(keys), *keys, *args)

    compare(
        ASY,
        [
            Contender("ours", "dsprims AsyncTokenBucket", ours),
            Contender("floor", "bare redis.asyncio evalsha", bare, goal=1.2),
        ],
        loop=loop,
    )
    loop.run_until_complete(backend.aclose())
    loop.close()


# -- blocking acquire --------------------------------------------------------------------------

ACQ = "ratelimit: blocking acquire, 100 admissions at 400/s"


def test_acquire_rate_ours(mark: Any) -> None:
    def run() -> None:
        # A burst of 1: nothing can be banked, so only booking admission instants (what
        # acquire does) keeps the rate when real sleeps wake up late.
        bucket = TokenBucket(400, 1)
        bucket.try_acquire("k")  # start empty: every admission below waits
        for _ in range(100):
            bucket.acquire("k")

    bench = mark(ACQ, "ours", "dsprims TokenBucket.acquire")
    bench.pedantic(run, rounds=3, iterations=1)


def test_acquire_rate_ideal(mark: Any) -> None:
    bench = mark(ACQ, "floor", "ideal: sleep(100 / rate)", goal=1 / 0.98)
    bench.pedantic(time.sleep, args=(100 / 400,), rounds=3, iterations=1)


def test_acquire_rate_pyrate(mark: Any) -> None:
    def run() -> None:
        limiter = Limiter(InMemoryBucket([Rate(4, 10)]))  # 4 per 10 ms = 400/s
        for _ in range(4):
            limiter.try_acquire("k", 1, False)
        for _ in range(100):
            limiter.try_acquire("k", 1, True)

    bench = mark(ACQ, "peer", "pyrate-limiter blocking try_acquire")
    bench.pedantic(run, rounds=2, iterations=1)
