from __future__ import annotations

import pytest
import redis

from dsprims import (
    AsyncMemoryBackend,
    ConfigurationError,
    MemoryBackend,
    async_backend_from_url,
    backend_from_url,
)
from dsprims.backends import resolve_async_backend, resolve_backend
from dsprims.backends.redis import AsyncRedisBackend, RedisBackend


def test_memory_url() -> None:
    assert isinstance(backend_from_url("memory://"), MemoryBackend)
    assert isinstance(async_backend_from_url("memory://"), AsyncMemoryBackend)


def test_redis_url_builds_a_fail_fast_client_without_connecting() -> None:
    backend = backend_from_url("redis://127.0.0.1:1/3?timeout=0.25")
    try:
        assert isinstance(backend, RedisBackend)
        assert isinstance(backend.client, redis.Redis)
        kwargs = backend.client.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == 0.25
        assert kwargs["db"] == 3
    finally:
        backend.close()


async def test_async_redis_url() -> None:
    backend = async_backend_from_url("redis://127.0.0.1:1/0")
    assert isinstance(backend, AsyncRedisBackend)
    await backend.aclose()


@pytest.mark.parametrize(
    "url", ["nosuch://x", "localhost:6379", "redis://h:1/0?timeout=-1", "redis://h/0?timeout=abc"]
)
def test_bad_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        backend_from_url(url)


def test_zookeeper_has_no_async_driver() -> None:
    with pytest.raises(ConfigurationError, match="kazoo"):
        async_backend_from_url("zookeeper://127.0.0.1:1")


def test_resolve_backend() -> None:
    backend = MemoryBackend()
    assert resolve_backend(backend) is backend
    assert isinstance(resolve_backend(None), MemoryBackend)
    assert isinstance(resolve_backend("memory://"), MemoryBackend)
    assert resolve_async_backend(backend).store is backend
    with pytest.raises(TypeError, match="backend"):
        resolve_backend(42)
    with pytest.raises(TypeError, match="url"):
        backend_from_url(42)  # type: ignore[arg-type]


async def test_driver_clients_are_wrapped_and_stay_the_callers() -> None:
    # No connection is made: redis-py and kazoo clients connect on first use (or start()).
    import redis.asyncio
    from kazoo.client import KazooClient

    from dsprims import ZooKeeperBackend

    client = redis.Redis(port=1)
    backend = resolve_backend(client)
    assert isinstance(backend, RedisBackend)
    assert backend.client is client
    backend.close()  # the client was passed in: not the backend's to close
    assert client.connection_pool is not None

    aclient = redis.asyncio.Redis(port=1)
    abackend = resolve_async_backend(aclient)
    assert isinstance(abackend, AsyncRedisBackend)
    assert abackend.client is aclient
    with pytest.raises(TypeError, match=r"redis\.asyncio client: use the primitive.s Async twin"):
        resolve_backend(aclient)
    with pytest.raises(TypeError, match="sync redis client"):
        resolve_async_backend(client)
    await aclient.aclose()

    kazoo = KazooClient(hosts="127.0.0.1:1")
    for resolve in (resolve_backend, resolve_async_backend):
        zk = resolve(kazoo)
        assert isinstance(zk, ZooKeeperBackend)
        assert zk.client is kazoo
    with pytest.raises(TypeError, match=r"a redis-py / kazoo client, got int"):
        resolve_async_backend(42)
