"""Child processes for the ZooKeeper lock acceptance tests (run as ``python child.py MODE …``).

``hold URL PREFIX RESOURCE``: acquire the lock, print ``HELD <token>``, wait for a line on
stdin, then print ``LOST <bool>``, try a fenced write (``WRITE ok|stale``) through a
``FencedStore`` on RESOURCE (``zk``: the lock's own ZooKeeper; else a backend URL, e.g. Redis)
and a release (``RELEASE ok|lost``).

``idle-exit URL PREFIX``: lock and release with ``cleanup_delay=60`` and exit at once, leaving
the lock znode's deletion to the interpreter-exit flush; print ``IDLE <lock znode>``.

``count URL PREFIX SECONDS``: read-modify-write a counter znode under the lock until SECONDS
have passed; print ``DONE <increments> <seconds the loop ran>``. The lock deletes its lock znode
as soon as this process stops using it (``cleanup_delay=0``), so the contenders also race the
idle cleanup.
"""

from __future__ import annotations

import sys
import time

from dsprims import (
    BackendUnavailable,
    FencedStore,
    LockLost,
    StaleTokenError,
    backend_from_url,
)
from dsprims.backends.zookeeper import ZooKeeperBackend
from dsprims.locks.zookeeper import ZooKeeperLock


def hold(url: str, prefix: str, resource: str) -> None:
    backend = backend_from_url(url, timeout=1.0)
    assert isinstance(backend, ZooKeeperBackend)
    lock = ZooKeeperLock("paused", backend=backend, prefix=prefix)
    lease = lock.acquire(timeout=20)
    print(f"HELD {lease.token}", flush=True)
    sys.stdin.readline()
    print(f"LOST {lease.lost}", flush=True)
    store = FencedStore("acct", backend=backend if resource == "zk" else resource, prefix=prefix)
    give_up = time.monotonic() + 15
    while True:  # an application would retry while the client reconnects
        try:
            store.write("balance", f"stale-from-{lease.token}", lease.token)
            print("WRITE ok", flush=True)
        except StaleTokenError:
            print("WRITE stale", flush=True)
        except BackendUnavailable:
            if time.monotonic() < give_up:
                time.sleep(0.05)
                continue
            print("WRITE unavailable", flush=True)
        break
    try:
        lease.release()
        print("RELEASE ok", flush=True)
    except LockLost:
        print("RELEASE lost", flush=True)
    backend.close()


def count(url: str, prefix: str, seconds: float) -> None:
    backend = backend_from_url(url, timeout=2.0)
    assert isinstance(backend, ZooKeeperBackend)
    lock = ZooKeeperLock("counter", backend=backend, prefix=prefix, cleanup_delay=0)
    path = f"/{prefix}-counter"
    done = 0
    print("READY", flush=True)
    sys.stdin.readline()
    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        with lock:
            data, _ = backend.request("get", path)
            backend.request("set", path, str(int(data) + 1).encode())  # deliberately not atomic
            done += 1
    ran = time.monotonic() - start
    # Close first: it sends the session's queued requests (the lock znode's delete among them)
    # before it ends the session, and the parent may kill this process as soon as it reads DONE.
    backend.close()
    print(f"DONE {done} {ran:.3f}", flush=True)


def idle_exit(url: str, prefix: str) -> None:
    """Lock and release with a long ``cleanup_delay``, then exit without ``close()``."""
    backend = backend_from_url(url, timeout=2.0)
    assert isinstance(backend, ZooKeeperBackend)
    lock = ZooKeeperLock("at-exit", backend=backend, prefix=prefix, cleanup_delay=60)
    lock.acquire(timeout=10).release()
    print(f"IDLE {lock.path}", flush=True)  # the interpreter-exit flush deletes it


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "hold":
        hold(sys.argv[2], sys.argv[3], sys.argv[4])
    elif mode == "count":
        count(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    elif mode == "idle-exit":
        idle_exit(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(f"unknown mode {mode}")
