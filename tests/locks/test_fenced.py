"""FencedStore on memory (Redis runs the same tests in test_redis_lock.py)."""

from __future__ import annotations

import sys

import pytest

from dsprims import ConfigurationError, ManualClock, MemoryBackend, StaleTokenError
from dsprims.locks import AsyncFencedStore, FencedStore, MemoryLock


def test_stale_tokens_are_rejected_equal_tokens_accepted() -> None:
    store = FencedStore("accounts")
    store.write("alice", "100", 5)
    store.write("alice", "110", 5)
    store.write("alice", "120", 9)
    with pytest.raises(StaleTokenError, match="stale"):
        store.write("alice", "999", 8)
    assert store.read("alice") == "120"
    assert store.read("bob") is None
    store.write("bob", "1", 1)  # keys are fenced independently


def test_values_keep_their_type() -> None:
    store = FencedStore("ns")
    store.write("s", "text", 1)
    store.write("b", b"\x00\xffbytes", 1)
    assert store.read("s") == "text"
    assert store.read("b") == b"\x00\xffbytes"


def test_bad_input() -> None:
    store = FencedStore("ns")
    with pytest.raises(TypeError, match="value"):
        store.write("k", 5, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="token"):
        store.write("k", "v", "1")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="token"):
        store.write("k", "v", -1)
    with pytest.raises(ConfigurationError, match="key"):
        store.write("", "v", 1)
    with pytest.raises(ConfigurationError, match="namespace"):
        FencedStore("")
    assert store.read("k") is None  # nothing was corrupted


def test_namespaces_are_separate() -> None:
    backend = MemoryBackend()
    FencedStore("a", backend=backend).write("k", "a", 10)
    FencedStore("b", backend=backend).write("k", "b", 1)
    assert FencedStore("a", backend=backend).read("k") == "a"


def test_pause_scenario_on_memory(manual_clock: ManualClock) -> None:
    backend = MemoryBackend()
    store = FencedStore("files", backend=backend)
    first = MemoryLock("f", backend=backend, clock=manual_clock, auto_renew=False).acquire()
    manual_clock.advance(30)  # the first holder is paused past its lease
    second = MemoryLock("f", backend=backend, clock=manual_clock).acquire(timeout=0)
    store.write("report", "new", second.token)
    assert first.lost
    with pytest.raises(StaleTokenError):
        store.write("report", "old", first.token)
    assert store.read("report") == "new"
    second.release()


def test_zookeeper_dispatch_without_the_module(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeZooKeeper:
        kind = "zookeeper"

    monkeypatch.setitem(sys.modules, "dsprims.locks.fenced_zookeeper", None)
    with pytest.raises(ConfigurationError, match="not available"):
        FencedStore("ns", backend=FakeZooKeeper())


async def test_async_fenced_store_shares_memory_state() -> None:
    backend = MemoryBackend()
    sync_store = FencedStore("ns", backend=backend)
    async_store = AsyncFencedStore("ns", backend=backend)
    await async_store.write("k", b"v", 3)
    assert sync_store.read("k") == b"v"
    with pytest.raises(StaleTokenError):
        await async_store.write("k", b"old", 2)
    assert await async_store.read("k") == b"v"
