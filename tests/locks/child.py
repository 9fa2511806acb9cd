"""Child-process roles for the acceptance tests (run as ``python child.py ROLE URL PREFIX ...``).

``holder``: acquire, print ``acquired <token>``, wait for a line on stdin (the parent pauses us
with SIGSTOP meanwhile), then report ``lost <bool>`` and try a fenced write, printing
``stale`` or ``written``.

``counter``: for ``seconds``, read-modify-write a plain Redis counter under the lock; print the
number of increments done and the seconds the loop ran (``done <n> <seconds>``).

``redlock-counter``: the same under a :class:`~dsprims.locks.Redlock` over the comma-separated
URLs (the counter lives on the first server).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from dsprims import StaleTokenError, backend_from_url
from dsprims.locks import FencedStore, RedisLock, Redlock


def holder(url: str, prefix: str, ttl: float) -> None:
    backend = backend_from_url(url)
    lock = RedisLock("paused", backend=backend, ttl=ttl, prefix=prefix)
    store = FencedStore("pause", backend=backend, prefix=prefix)
    lease = lock.acquire(timeout=30)
    print(f"acquired {lease.token}", flush=True)
    sys.stdin.readline()
    print(f"lost {lease.lost}", flush=True)
    try:
        store.write("resource", f"from {lease.token}", lease.token)
    except StaleTokenError:
        print("stale", flush=True)
    else:
        print("written", flush=True)


def counter(url: str, prefix: str, seconds: float) -> None:
    backend = backend_from_url(url, timeout=5.0)
    lock = RedisLock("counter", backend=backend, ttl=5.0, prefix=prefix)
    count_under(lock, backend.client, f"{prefix}:plain-counter", seconds)


def redlock_counter(urls: str, prefix: str, seconds: float) -> None:
    backends = [backend_from_url(url, timeout=5.0) for url in urls.split(",")]
    lock = Redlock("counter", backends=backends, ttl=5.0, prefix=prefix)
    count_under(lock, backends[0].client, f"{prefix}:plain-counter", seconds)
    lock.close()


def count_under(lock: RedisLock | Redlock, client: Any, key: str, seconds: float) -> None:
    done = 0
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        with lock.acquire(timeout=30):
            value = int(client.get(key) or 0)
            client.set(key, value + 1)
            done += 1
    print(f"done {done} {time.monotonic() - start:.3f}", flush=True)


if __name__ == "__main__":
    role, url, prefix, arg = sys.argv[1:5]
    if role == "holder":
        holder(url, prefix, float(arg))
    elif role == "counter":
        counter(url, prefix, float(arg))
    elif role == "redlock-counter":
        redlock_counter(url, prefix, float(arg))
    else:
        raise SystemExit(f"unknown role {role}")
