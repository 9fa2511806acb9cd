"""Child-process workers for the acceptance tests (importable, so ``spawn`` can run them)."""

from __future__ import annotations

import threading
import time
from typing import Any

from dsprims import SlidingWindowLog, TokenBucket, backend_from_url


def make_limiter(algo: str, backend: Any, prefix: str) -> Any:
    """The limiter under test; the same settings in every process."""
    if algo == "token_bucket":
        return TokenBucket(50, 20, backend=backend, prefix=prefix)
    return SlidingWindowLog(100, 10.0, backend=backend, prefix=prefix)


def hammer(url: str, prefix: str, algo: str, seconds: float, skew: float, threads: int) -> int:
    """Hammer one key from ``threads`` threads for ``seconds``; return how many were admitted.

    ``skew`` moves this process's wall clock (``time.time``/``time.time_ns``) by that many
    seconds: decisions use the Redis server's TIME, so it must not matter.
    """
    if skew:
        real_time, real_time_ns = time.time, time.time_ns
        time.time = lambda: real_time() + skew
        time.time_ns = lambda: real_time_ns() + int(skew * 1e9)
    backend = backend_from_url(url, timeout=5.0)
    limiter = make_limiter(algo, backend, prefix)
    admitted = [0] * threads
    deadline = time.monotonic() + seconds

    def run(i: int) -> None:
        while time.monotonic() < deadline:
            if limiter.try_acquire("hot").allowed:
                admitted[i] += 1

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    backend.close()
    return sum(admitted)
