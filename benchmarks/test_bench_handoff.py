"""Lock handoff latency on Redis: release by one holder -> the next waiter holds the lock.

One waiter thread blocks in ``acquire`` while the main thread holds the lock; the main thread
notes the time and releases; the waiter notes the time it got the lock. Each row stores its
samples in ``extra_info["samples_ms"]`` for the report's distribution plot, and its median
handoff becomes the row's time. dsprims (fair mode) hands the lock over: the release script
grants it to the waiter and its BLPOP returns the token (two message hops); redis-py's ``Lock``
polls (``sleep=0.1`` by default); python-redis-lock wakes the waiter by BLPOP, which then
asks again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis_lock

from dsprims import backend_from_url
from dsprims.locks import RedisLock

GROUP = "locks: handoff latency, release -> next waiter holds (Redis)"


def _measure(
    make: Callable[[], tuple[Callable[[], Any], Callable[[Any], None]]], rounds: int
) -> list[float]:
    """``make()`` returns (acquire, release) for one client; two clients take turns."""
    holder_acquire, holder_release = make()
    waiter_acquire, waiter_release = make()
    samples: list[float] = []
    for _ in range(rounds):
        held = holder_acquire()
        got: list[float] = []
        waiting = threading.Event()

        def wait(waiting: threading.Event, got: list[float]) -> None:
            waiting.set()
            token = waiter_acquire()
            got.append(time.perf_counter())
            waiter_release(token)

        thread = threading.Thread(target=wait, args=(waiting, got))
        thread.start()
        waiting.wait()
        time.sleep(0.01)  # let the waiter block in acquire (or start polling)
        released = time.perf_counter()
        holder_release(held)
        thread.join()
        samples.append((got[0] - released) * 1000)
    return samples


def _record(benchmark: Any, mark: Any, label: str, role: str, samples: list[float]) -> None:
    bench = mark(GROUP, role, label)
    bench.extra_info["samples_ms"] = samples
    bench.pedantic(lambda: None, rounds=1, iterations=1)


@pytest.mark.parametrize("auto_renew", [True, False], ids=["default", "no_renew"])
def test_handoff_ours(redis_server: Any, benchmark: Any, mark: Any, auto_renew: bool) -> None:
    backend = backend_from_url(redis_server.url, timeout=5.0)
    lock = RedisLock("handoff", backend=backend, prefix="bench-handoff", auto_renew=auto_renew)

    def make() -> tuple[Callable[[], Any], Callable[[Any], None]]:
        return (lambda: lock.acquire(timeout=10)), (lambda lease: lease.release())

    samples = _measure(make, 200)
    backend.close()
    # Both rows are ours; the peers' ratios are taken against the first (the default lock).
    # Without auto_renew nothing renews, so a handed lease cut below ttl is extended before
    # acquire returns.
    label = (
        "dsprims RedisLock (FIFO, handed over)"
        if auto_renew
        else "dsprims RedisLock, auto_renew=False (handed over + extend)"
    )
    _record(benchmark, mark, label, "ours", samples)


def _peer(
    redis_server: Any,
    benchmark: Any,
    mark: Any,
    new_lock: Callable[[Any], Any],
    rounds: int,
    label: str,
) -> None:
    """Measure a peer lock class: ``new_lock(client)`` makes one lock object with
    ``acquire(blocking=True)`` and ``release()``."""
    client = redis_server.client(socket_timeout=10)

    def make() -> tuple[Callable[[], Any], Callable[[Any], None]]:
        def acquire() -> Any:
            lock = new_lock(client)
            lock.acquire(blocking=True)
            return lock

        return acquire, (lambda lock: lock.release())

    samples = _measure(make, rounds)
    client.close()
    _record(benchmark, mark, label, "peer", samples)


def test_handoff_redis_py(redis_server: Any, benchmark: Any, mark: Any) -> None:
    def new_lock(client: Any) -> Any:
        return client.lock("bench-handoff:redis-py", timeout=10)

    _peer(redis_server, benchmark, mark, new_lock, 40, "redis-py Lock (polls every 0.1 s)")


def test_handoff_python_redis_lock(redis_server: Any, benchmark: Any, mark: Any) -> None:
    def new_lock(client: Any) -> Any:
        return redis_lock.Lock(client, "bench-handoff-prl", expire=10)

    _peer(redis_server, benchmark, mark, new_lock, 200, "python-redis-lock (BLPOP)")
