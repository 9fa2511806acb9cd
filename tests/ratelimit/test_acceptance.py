"""Acceptance: concurrency on real Redis, pathological settings, many live keys."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import pytest

from dsprims import (
    ManualClock,
    MemoryBackend,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
    backend_from_url,
)
from dsprims.backends._lua import lua_script
from dsprims.backends.redis import RedisBackend
from dsprims.ratelimit.limiters import SCRIPT
from dsprims.testing.servers import RedisServerProcess
from tests.ratelimit._workers import hammer


def _server_seconds(backend: RedisBackend) -> float:
    seconds, micros = backend.client.time()
    return float(seconds) + micros / 1e6


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.parametrize("algo", ["token_bucket", "log"])
def test_threads_and_processes_never_over_admit(
    redis_server: RedisServerProcess, key_prefix: str, algo: str
) -> None:
    """8 threads here and 4 processes (one with its clock 2 s ahead) on one key for ~2 s."""
    backend = backend_from_url(redis_server.url, timeout=5.0)
    try:
        ctx = multiprocessing.get_context("spawn")
        start = _server_seconds(backend)
        with ctx.Pool(4) as pool:
            children = [
                pool.apply_async(
                    hammer, (redis_server.url, key_prefix, algo, 2.0, 2.0 if i == 0 else 0.0, 2)
                )
                for i in range(4)
            ]
            here = hammer(redis_server.url, key_prefix, algo, 2.0, 0.0, 8)
            total = here + sum(child.get(timeout=60) for child in children)
        elapsed = _server_seconds(backend) - start
    finally:
        backend.close()
    if algo == "token_bucket":
        assert 20 <= total <= 20 + 50 * elapsed
    else:
        assert elapsed < 10.0  # so every admission fell into one window of 10 s
        assert total == 100


@pytest.mark.redis
def test_short_buckets_keep_their_state(redis_backend: RedisBackend, key_prefix: str) -> None:
    """capacity / rate = 0.4 s: the key must live and limit (one peer expires it at once)."""
    bucket = TokenBucket(2.5, 1, backend=redis_backend, prefix=key_prefix)
    started = time.monotonic()
    assert bucket.try_acquire("k").allowed
    second = bucket.try_acquire("k")
    if time.monotonic() - started < 0.35:  # a loaded machine may take longer than the refill
        assert not second.allowed
        assert 0 < second.retry_after <= 0.4
    (key,) = list(redis_backend.client.scan_iter(match=f"{key_prefix}:*"))
    assert 0 < redis_backend.client.pttl(key) <= 402


@pytest.mark.redis
@pytest.mark.parametrize("on_redis", [False, True])
def test_pathological_settings_stay_exact(
    redis_backend: RedisBackend, key_prefix: str, on_redis: bool
) -> None:
    clock = ManualClock(start=1000.0)
    kw: dict[str, Any] = {"clock": clock, "prefix": key_prefix}
    kw["backend"] = redis_backend if on_redis else MemoryBackend()
    # a million per day, as a bucket, a log and a counter
    day = 86400.0
    bucket = TokenBucket(1e6 / day, 10**6, **kw)
    log = SlidingWindowLog(10**6, day, **kw)
    counter = SlidingWindowCounter(10**6, day, **kw)
    for limiter in (bucket, log, counter):
        assert limiter.try_acquire("k", 10**6 - 1).allowed
        assert limiter.try_acquire("k").allowed
        assert not limiter.try_acquire("k").allowed
    denied = bucket.try_acquire("k")
    assert denied.retry_after == pytest.approx(0.0864, abs=2e-6)
    clock.advance(denied.retry_after)
    assert bucket.try_acquire("k").allowed
    assert log.try_acquire("k").retry_after == pytest.approx(day - 0.0864, abs=1e-3)
    # sub-second windows and sub-millisecond buckets
    fast_log = SlidingWindowLog(3, 0.05, **kw)
    fast_bucket = TokenBucket(10_000, 2, **kw)  # refills a token every 100 us
    assert [fast_log.try_acquire("f").allowed for _ in range(4)] == [True] * 3 + [False]
    assert [fast_bucket.try_acquire("f").allowed for _ in range(3)] == [True, True, False]
    clock.advance(0.0001)
    assert fast_bucket.try_acquire("f").allowed
    clock.advance(0.0499)
    assert fast_log.try_acquire("f").allowed


@pytest.mark.slow
@pytest.mark.redis
def test_a_hundred_thousand_live_keys(redis_backend: RedisBackend, key_prefix: str) -> None:
    """10^5 live keys: none evicted early, every one with a positive TTL (pipelined setup)."""
    n = 100_000
    bucket = TokenBucket(0.001, 1, backend=redis_backend, prefix=key_prefix)  # refills in 1000 s
    client = redis_backend.client
    script = lua_script(SCRIPT)
    client.script_load(script.source)
    sha = script.sha
    args = bucket._script_args(1, True)
    for batch in range(0, n, 5000):
        pipe = client.pipeline(transaction=False)
        for i in range(batch, batch + 5000):
            keys = bucket._redis_keys(f"user-{i}")
            pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)
        assert all(int(reply[0]) == 1 for reply in (r[:1] for r in pipe.execute()))
    keys = list(client.scan_iter(match=f"{key_prefix}:*", count=10_000))
    assert len(keys) == n
    ttls: list[int] = []
    for batch in range(0, n, 10_000):
        pipe = client.pipeline(transaction=False)
        for key in keys[batch : batch + 10_000]:
            pipe.pttl(key)
        ttls += pipe.execute()
    try:
        assert len(ttls) == n
        assert min(ttls) > 900_000  # ~1000 s left on every key (minus a slow machine's delays)
        for i in range(0, n, 997):  # a sample through the public API: still limited
            assert not bucket.try_acquire(f"user-{i}").allowed
    finally:  # the server is shared by the session: leave no 10^5 keys for later SCANs
        for batch in range(0, n, 10_000):
            client.unlink(*keys[batch : batch + 10_000])


def test_a_hundred_thousand_live_keys_in_memory() -> None:
    clock = ManualClock(start=1000.0)
    store = MemoryBackend()
    bucket = TokenBucket(0.001, 1, backend=store, clock=clock)
    for i in range(100_000):
        bucket.try_acquire(f"user-{i}")
    clock.advance(999.0)
    assert len(store) == 100_000  # nothing evicted before its state stops mattering
    assert not any(bucket.peek(f"user-{i}").allowed for i in range(0, 100_000, 97))
    clock.advance(1.01)
    assert len(store) == 0
