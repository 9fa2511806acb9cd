"""Demo section: the ZooKeeper lock (``dsprims demo --zookeeper host:port``).

Shows a FIFO handoff between two clients with ``czxid`` fencing tokens, then a holder whose
session expires: its lease turns lost and its late write is refused by the fenced store.
Without ``--zookeeper`` (or a ``zookeeper://`` ``--backend``) the section says how to run it.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import TYPE_CHECKING

from dsprims.errors import DsprimsError, LockLost, StaleTokenError

if TYPE_CHECKING:
    from dsprims.cli import DemoOptions, DemoOutput

TITLE = "ZooKeeper lock: czxid fencing tokens, FIFO waiters, session loss"


def _url(options: DemoOptions) -> str | None:
    if options.zookeeper:
        return f"zookeeper://{options.zookeeper}"
    if options.backend_url.startswith(("zookeeper://", "zk://")):
        return options.backend_url
    return None


def run(out: DemoOutput, options: DemoOptions) -> None:
    """Run the section against the ZooKeeper named on the command line, if any."""
    url = _url(options)
    if url is None:
        out.line("Skipped: pass --zookeeper host:port to run it against a real ZooKeeper.")
        return
    try:
        _run(out, url)
    except DsprimsError as exc:
        out.bad(f"ZooKeeper demo stopped: {type(exc).__name__}: {exc}")


def _run(out: DemoOutput, url: str) -> None:
    from kazoo.client import KazooClient

    from dsprims.backends.url import backend_from_url
    from dsprims.locks.fenced import FencedStore
    from dsprims.locks.lease import Lease
    from dsprims.locks.zookeeper import ZooKeeperLock

    prefix = f"demo-{secrets.token_hex(4)}"
    alice = backend_from_url(f"{url}?session_timeout=2", timeout=2.0)
    bob = backend_from_url(f"{url}?session_timeout=4", timeout=2.0)
    try:
        lock_a = ZooKeeperLock("ledger", backend=alice, prefix=prefix)
        lock_b = ZooKeeperLock("ledger", backend=bob, prefix=prefix)
        store = FencedStore("books", backend=bob, prefix=prefix)

        first = lock_a.acquire(timeout=5)
        out.line(f"alice holds {lock_a.path} with token {first.token} (her node's czxid)")
        got: list[Lease] = []
        waiter = threading.Thread(target=lambda: got.append(lock_b.acquire(timeout=10)))
        waiter.start()
        first.release()
        waiter.join(15)
        if not got:
            out.bad("bob was not granted the lock")
            return
        out.good(f"bob was woken by a watch on alice's node: token {got[0].token} > {first.token}")
        got[0].release()

        out.line("alice takes the lock again, then her session expires (as after a long pause)")
        lease = lock_a.acquire(timeout=10)
        session_id, password = alice.client.client_id
        hosts = url.split("://", 1)[1].split("?", 1)[0]
        other = KazooClient(hosts=hosts, client_id=(session_id, password))
        other.start(timeout=10)
        other.stop()
        other.close()
        newer = lock_b.acquire(timeout=10)
        store.write("balance", "written by bob", newer.token)
        out.good(f"bob holds it with token {newer.token} and wrote the balance")
        give_up = time.monotonic() + 10
        while not lease.lost and time.monotonic() < give_up:
            time.sleep(0.02)  # kazoo reports LOST once alice's client reconnects
        out.good(f"alice's lease.lost == {lease.lost} ({lease.lost_reason})")
        try:
            lease.release()
            out.bad("alice's release() succeeded (this should not happen)")
        except LockLost:
            out.good("alice's release() raises LockLost (kazoo's Lock.release would return True)")
        try:
            store.write("balance", "late write by alice", lease.token)
            out.bad("alice's stale write landed (this should not happen)")
        except StaleTokenError:
            out.good(f"alice's late write with token {lease.token} was refused: StaleTokenError")
        newer.release()
    finally:
        alice.close()
        bob.close()
