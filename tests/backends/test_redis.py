"""Redis backend conformance: scripts, namespacing, cluster slots, outages, restarts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis as redis_py

from dsprims import BackendError, BackendUnavailable, backend_from_url
from dsprims.backends import namespaced_key
from dsprims.backends.redis import AsyncRedisBackend, RedisBackend
from dsprims.testing.servers import RedisServerProcess

pytestmark = pytest.mark.redis

HOSTILE = ["{", "}", "a}b{c", "line\nbreak", "x" * 1000, "*", "dsprims:{other}:x", "键🔑"]


def test_evalsha_runs_package_scripts_and_reads_server_time(redis_backend: RedisBackend) -> None:
    micros = redis_backend.evalsha("ping", [])
    assert abs(micros / 1e6 - time.time()) < 5


def test_script_flush_is_handled_without_a_failure(redis_backend: RedisBackend) -> None:
    redis_backend.evalsha("ping", [])
    redis_backend.client.script_flush()
    assert redis_backend.evalsha("ping", []) > 0  # NOSCRIPT -> EVAL, transparently
    assert redis_backend.evalsha("ping", []) > 0  # and EVALSHA works again


def test_script_errors_are_backend_errors(redis_backend: RedisBackend) -> None:
    with pytest.raises(BackendError) as info:
        redis_backend.evalsha("conformance_touch", ["k"], ["v", "not-a-number"])
    assert not isinstance(info.value, BackendUnavailable)
    assert isinstance(info.value.__cause__, redis_py.RedisError)


def _scan(client: Any) -> list[bytes]:
    return list(client.scan_iter(count=1000))


def test_hostile_names_stay_in_the_namespace(redis_backend: RedisBackend, key_prefix: str) -> None:
    for name in HOSTILE:
        keys = [namespaced_key(key_prefix, name, "a"), namespaced_key(key_prefix, name, "b")]
        assert redis_backend.evalsha("conformance_touch", keys, ["v", 60_000]) == 2
    mine = [k for k in _scan(redis_backend.client) if k.startswith(key_prefix.encode())]
    assert len(mine) == 2 * len(HOSTILE)
    assert all(k.startswith(f"{key_prefix}:{{".encode()) for k in mine)


def test_cluster_keys_of_one_name_share_a_slot(
    redis_cluster_backend: RedisBackend, key_prefix: str
) -> None:
    assert redis_cluster_backend.is_cluster
    for name in [*HOSTILE, "user:1", "user:2", "user:3"]:
        keys = [namespaced_key(key_prefix, name, part) for part in ("a", "b", "c")]
        assert redis_cluster_backend.evalsha("conformance_touch", keys, ["v", 60_000]) == 3


def test_cluster_rejects_keys_of_different_names(
    redis_cluster_backend: RedisBackend, key_prefix: str
) -> None:
    # The guard works both ways: different names land in different slots, and the server says so.
    names = [f"n{i}" for i in range(20)]
    keys = [namespaced_key(key_prefix, n, "a") for n in names]
    with pytest.raises(BackendError):
        redis_cluster_backend.evalsha("conformance_touch", keys, ["v", 60_000])


def test_killed_server_raises_unavailable_within_the_timeout(
    redis_server: RedisServerProcess,
) -> None:
    backend = backend_from_url(redis_server.url, timeout=0.5)
    try:
        backend.ping()
        redis_server.kill()
        started = time.monotonic()
        with pytest.raises(BackendUnavailable) as info:
            backend.evalsha("ping", [])
        assert time.monotonic() - started <= 0.5 + 1.0
        assert isinstance(info.value.__cause__, redis_py.ConnectionError)
    finally:
        backend.close()


def test_frozen_server_raises_unavailable_within_the_timeout(
    redis_server: RedisServerProcess,
) -> None:
    backend = backend_from_url(redis_server.url, timeout=0.5)
    try:
        backend.ping()
        with redis_server.frozen_for_a_while():
            started = time.monotonic()
            with pytest.raises(BackendUnavailable):
                backend.evalsha("ping", [])
            assert time.monotonic() - started <= 0.5 + 1.0
    finally:
        backend.close()


def test_calls_resume_after_a_restart_with_no_extra_failure(
    redis_server: RedisServerProcess,
) -> None:
    backend = backend_from_url(redis_server.url, timeout=1.0)
    try:
        backend.evalsha("ping", [])
        redis_server.restart()
        # The pooled socket is dead and the script cache is empty: both are handled.
        assert backend.evalsha("ping", []) > 0
    finally:
        backend.close()


def test_cluster_node_killed_then_restarted(redis_cluster: Any, key_prefix: str) -> None:
    backend = backend_from_url(redis_cluster.url, timeout=0.5)
    try:
        key = namespaced_key(key_prefix, "victim", "a")
        slot_owner = backend.client.get_node_from_key(key)
        node = next(n for n in redis_cluster.nodes if n.port == slot_owner.port)
        node.kill()
        started = time.monotonic()
        with pytest.raises(BackendUnavailable):
            backend.evalsha("conformance_touch", [key], ["v", 1000])
        assert time.monotonic() - started <= 0.5 + 1.0 + 2.0  # + cluster re-discovery
        redis_cluster.ensure_running()
        assert backend.evalsha("conformance_touch", [key], ["v", 1000]) == 1
    finally:
        backend.close()


def test_passed_in_client_is_used_as_is(redis_server: RedisServerProcess) -> None:
    client = redis_server.client(decode_responses=True)
    backend = RedisBackend(client)
    assert backend.ping()
    backend.close()  # not ours to close
    assert client.ping()
    client.close()
    with pytest.raises(TypeError, match="client"):
        RedisBackend("redis://localhost")  # type: ignore[arg-type]


async def test_async_backend_runs_scripts_and_maps_errors(
    redis_server: RedisServerProcess,
) -> None:
    from dsprims import async_backend_from_url

    backend = async_backend_from_url(redis_server.url, timeout=0.5)
    assert isinstance(backend, AsyncRedisBackend)
    try:
        assert await backend.evalsha("ping", []) > 0
        await backend.client.script_flush()
        assert await backend.evalsha("ping", []) > 0
        with redis_server.frozen_for_a_while():
            started = time.monotonic()
            with pytest.raises(BackendUnavailable):
                await backend.evalsha("ping", [])
            assert time.monotonic() - started <= 1.5
    finally:
        await backend.aclose()


async def test_async_backend_on_the_cluster(redis_cluster: Any, key_prefix: str) -> None:
    from dsprims import async_backend_from_url

    backend = async_backend_from_url(redis_cluster.url, timeout=1.0)
    assert isinstance(backend, AsyncRedisBackend)
    assert backend.is_cluster
    try:
        for name in HOSTILE:
            keys = [namespaced_key(key_prefix, name, p) for p in ("a", "b")]
            assert await backend.evalsha("conformance_touch", keys, ["v", 60_000]) == 2
    finally:
        await backend.aclose()


@pytest.mark.redis
@pytest.mark.parametrize("decode", [False, True])
async def test_every_redis_primitive_works_on_resp3_clients(
    redis_server: RedisServerProcess, key_prefix: str, decode: bool
) -> None:
    # Clients made with protocol=3 get RESP3 replies (maps, doubles, nulls and booleans of
    # their own types, and push messages): locks, rate limiters and fleet breakers, sync and
    # asyncio, decide exactly as on RESP2.
    import redis.asyncio as aredis

    from dsprims import (
        AsyncCircuitBreaker,
        AsyncRedisLock,
        AsyncTokenBucket,
        BreakerState,
        CircuitBreaker,
        CircuitOpenError,
        ManualClock,
        RedisLock,
        Redlock,
        SlidingWindowCounter,
        SlidingWindowLog,
        TokenBucket,
    )

    client = redis_py.Redis(port=redis_server.port, protocol=3, decode_responses=decode)
    aclient = aredis.Redis(port=redis_server.port, protocol=3, decode_responses=decode)
    backend, abackend = RedisBackend(client), AsyncRedisBackend(aclient)
    try:
        lock = RedisLock("r3", backend=client, prefix=key_prefix)  # a client is wrapped
        with lock.acquire(timeout=1) as first:
            assert lock.try_acquire() is None
        second = lock.acquire(timeout=1)
        assert second.token > first.token
        second.release()
        redlock = Redlock("r3", backends=[backend], prefix=key_prefix)
        with redlock.acquire(timeout=1) as lease:
            assert lease.token > 0
        alock = AsyncRedisLock("r3a", backend=abackend, prefix=key_prefix)
        async with alock as alease:
            assert alease.token > 0
        await alock.settle()

        clock = ManualClock(start=100.0)  # pinned: the expected decisions are exact
        bucket = TokenBucket(2, 3, backend=client, prefix=key_prefix, clock=clock)
        assert [bucket.try_acquire("k").remaining for _ in range(3)] == [2, 1, 0]
        denied = bucket.try_acquire("k")
        assert (denied.allowed, denied.retry_after) == (False, 0.500001)
        for window in (SlidingWindowLog, SlidingWindowCounter):
            limiter = window(2, 10.0, backend=backend, prefix=key_prefix, clock=clock)
            assert [limiter.try_acquire("k").allowed for _ in range(3)] == [True, True, False]
        abucket = AsyncTokenBucket(2, 3, backend=aclient, prefix=key_prefix, clock=clock)
        assert (await abucket.try_acquire("k")).allowed is False  # shares the sync bucket's key

        breaker = CircuitBreaker("r3", backend=client, prefix=key_prefix, consecutive_failures=1)
        abreaker = AsyncCircuitBreaker("r3", backend=abackend, prefix=key_prefix)
        try:
            with pytest.raises(ZeroDivisionError):
                breaker.call(lambda: 1 / 0)
            assert breaker.state is BreakerState.OPEN
            with pytest.raises(CircuitOpenError):  # the fleet's state, read over RESP3
                await abreaker.call(asyncio.sleep, 0)
            assert abreaker.state is BreakerState.OPEN
        finally:
            breaker.close()
            await abreaker.aclose()
    finally:
        client.close()
        await aclient.aclose()
