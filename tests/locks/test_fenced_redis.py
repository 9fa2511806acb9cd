"""FencedStore on a real Redis (standalone and Cluster)."""

from __future__ import annotations

from typing import Any

import pytest

from dsprims import StaleTokenError
from dsprims.locks import AsyncFencedStore, FencedStore

pytestmark = pytest.mark.redis


def test_redis_fenced_store(backend: Any, key_prefix: str) -> None:
    store = FencedStore("ns}{", backend=backend, prefix=key_prefix)
    store.write("k{1}", "v1", 10)
    store.write("k{1}", "v2", 10)
    with pytest.raises(StaleTokenError):
        store.write("k{1}", "old", 9)
    assert store.read("k{1}") == "v2"
    store.write("bin", b"\x00\xff", 2**63 - 1)
    with pytest.raises(StaleTokenError):
        store.write("bin", b"x", 2**63 - 2)  # compared exactly, beyond double precision
    assert store.read("bin") == b"\x00\xff"
    assert store.read("missing") is None


async def test_async_redis_fenced_store(redis_server: Any, key_prefix: str) -> None:
    from dsprims import async_backend_from_url

    backend = async_backend_from_url(redis_server.url)
    try:
        store = AsyncFencedStore("ns", backend=backend, prefix=key_prefix)
        await store.write("k", "é", 5)
        with pytest.raises(StaleTokenError):
            await store.write("k", "x", 4)
        assert await store.read("k") == "é"
        sync = FencedStore("ns", backend=redis_server.url, prefix=key_prefix)
        assert sync.read("k") == "é"
        sync.backend.close()
    finally:
        await backend.aclose()


def test_decoded_client_reads_strings(redis_server: Any, key_prefix: str) -> None:
    from dsprims.backends.redis import RedisBackend

    backend = RedisBackend(redis_server.client(decode_responses=True))
    store = FencedStore("ns", backend=backend, prefix=key_prefix)
    store.write("k", "text", 1)
    store.write("b", b"utf8 bytes", 1)
    assert store.read("k") == "text"
    assert store.read("b") == b"utf8 bytes"
    with pytest.raises(StaleTokenError):
        store.write("k", "x", 0)
