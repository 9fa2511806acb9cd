"""Demo section: fencing tokens stop a paused holder's stale write; FIFO waiters, no polling."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from dsprims.backends.memory import MemoryBackend
from dsprims.backends.url import backend_from_url
from dsprims.errors import LockLost, StaleTokenError
from dsprims.locks.fenced import FencedStore
from dsprims.locks.memory import MemoryLock
from dsprims.testing.clock import ManualClock

if TYPE_CHECKING:
    from dsprims.cli import DemoOptions, DemoOutput

TITLE = "Locks: fencing tokens, loss detection, FIFO waiters"


def run(out: DemoOutput, options: DemoOptions) -> None:
    """Replay the pause scenario on a virtual clock, then hand a lock around four threads."""
    clock = ManualClock(start=1000.0)
    backend = MemoryBackend()
    store = FencedStore("reports", backend=backend)
    lock_a = MemoryLock("nightly", backend=backend, clock=clock, ttl=10.0, auto_renew=False)
    lock_b = MemoryLock("nightly", backend=backend, clock=clock, ttl=10.0, auto_renew=False)

    a = lock_a.acquire()
    out.line(f"A holds the lock with fencing token {a.token}")
    clock.advance(30)
    out.line("A is paused for 30 s (GC, SIGSTOP, a stopped VM) - its 10 s lease runs out")
    b = lock_b.acquire(timeout=0)
    store.write("report", "written by B", b.token)
    out.line(f"B acquires with token {b.token} and writes the report")
    out.line(f"A resumes: lease.lost = {a.lost} (its local deadline passed, no round trip)")
    try:
        store.write("report", "written by A", a.token)
    except StaleTokenError:
        out.good("A's late write carries the old token and is rejected: StaleTokenError")
    else:
        out.bad("A's stale write landed")
    try:
        a.release()
    except LockLost:
        out.good("A's release() raises LockLost instead of succeeding silently")
    b.release()
    out.line(f"The report says: {store.read('report')!r}")

    _fifo(out, options)


def _fifo(out: DemoOutput, options: DemoOptions) -> None:
    shared: Any = MemoryBackend()
    where = "in memory"
    made = None
    if options.backend_url.startswith(("redis://", "rediss://")):
        from dsprims.locks.redis import RedisLock

        made = shared = backend_from_url(options.backend_url)
        where = "on Redis"

        def new_lock() -> Any:
            return RedisLock("demo-fifo", backend=shared, prefix="dsprims-demo")

    else:

        def new_lock() -> Any:
            return MemoryLock("demo-fifo", backend=shared)

    out.line(f"Four threads queue for one lock {where}; each is woken by the release before it:")
    holder = new_lock().acquire()
    order: list[str] = []
    threads = []
    for name in "wxyz":

        def wait(name: str = name) -> None:
            lease = new_lock().acquire(timeout=10)
            order.append(f"{name}(token {lease.token % 100000})")
            lease.release()

        thread = threading.Thread(target=wait)
        thread.start()
        threads.append(thread)
        time.sleep(0.02)  # let each one queue before the next arrives
    start = time.perf_counter()
    holder.release()
    for thread in threads:
        thread.join()
    elapsed = (time.perf_counter() - start) * 1000
    out.good(f"served in arrival order: {' -> '.join(order)} in {elapsed:.1f} ms")
    if made is not None:
        made.close()
