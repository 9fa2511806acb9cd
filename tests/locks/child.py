"""Child-process roles for the acceptance tests (run as ``python child.py ROLE URL PREFIX ...``).

``holder``: acquire, print ``acquired <token>``, wait for a line on stdin (the parent pauses us
with SIGSTOP meanwhile), then report ``lost <bool>`` and try a fenced write, printing
``stale`` or ``written``.

``counter``: for ``seconds``, read-modify-write a plain Redis counter under the lock; print the
number of increments done.
"""

from __future__ import annotations

import sys
import time

from dsprims import StaleTokenError, backend_from_url
from dsprims.locks import FencedStore, RedisLock


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
    key = f"{prefix}:plain-counter"
    client = backend.client
    done = 0
    print("ready", flush=True)
    sys.stdin.readline()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with lock.acquire(timeout=30):
            value = int(client.get(key) or 0)
            client.set(key, value + 1)
            done += 1
    print(f"done {done}", flush=True)


if __name__ == "__main__":
    role, url, prefix, arg = sys.argv[1:5]
    if role == "holder":
        holder(url, prefix, float(arg))
    elif role == "counter":
        counter(url, prefix, float(arg))
    else:
        raise SystemExit(f"unknown role {role}")
