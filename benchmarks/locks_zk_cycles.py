"""Uncontended ZooKeeper lock cycles, interleaved: dsprims vs kazoo's floor and kazoo's Lock.

Run: ``python benchmarks/locks_zk_cycles.py [--rounds 60] [--hosts 127.0.0.1:2181]`` (without
``--hosts`` it starts a throw-away standalone ZooKeeper). Each round runs every candidate for a
batch of 10 cycles, in turn, so slow phases of a shared machine hit all of them alike; the
report is the median batch per cycle and the ratios of the medians. A report, not a test.

Candidates: ``ZooKeeperLock`` acquire + release (one ``multi`` + one ``delete``); the floor, a
bare kazoo ``create`` + ``delete`` of an ephemeral sequential node; kazoo 2.x ``Lock``
acquire + release (four round trips when reused).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path


def measure(hosts: str, rounds: int) -> dict[str, float]:
    """Median seconds per cycle of each candidate."""
    from kazoo.client import KazooClient
    from kazoo.recipe.lock import Lock

    from dsprims import backend_from_url
    from dsprims.locks.zookeeper import ZooKeeperLock

    prefix = f"bench{uuid.uuid4().hex[:8]}"
    backend = backend_from_url(f"zookeeper://{hosts}?session_timeout=10", timeout=5.0)
    client = KazooClient(hosts=hosts)
    client.start(timeout=15)
    try:
        ours = ZooKeeperLock("cycle", backend=backend, prefix=prefix)
        parent = f"/{prefix}-floor"
        client.ensure_path(parent)
        peer = Lock(client, f"/{prefix}-kazoo")

        def dsprims_cycle() -> None:
            ours.acquire().release()

        def floor_cycle() -> None:
            path = client.create_async(f"{parent}/n-", b"", ephemeral=True, sequence=True).get()
            client.delete_async(path).get()

        def kazoo_cycle() -> None:
            peer.acquire()
            peer.release()

        candidates: dict[str, Callable[[], None]] = {
            "dsprims ZooKeeperLock": dsprims_cycle,
            "kazoo create+delete (floor)": floor_cycle,
            "kazoo Lock": kazoo_cycle,
        }
        samples: dict[str, list[float]] = {name: [] for name in candidates}
        for fn in candidates.values():
            fn()
        for _ in range(rounds):
            for name, fn in candidates.items():
                started = time.perf_counter()
                for _ in range(10):
                    fn()
                samples[name].append((time.perf_counter() - started) / 10)
        return {name: statistics.median(values) for name, values in samples.items()}
    finally:
        client.stop()
        client.close()
        backend.close()


def main() -> None:
    """Parse arguments, run, print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--hosts", default=None)
    args = parser.parse_args()
    server = None
    hosts = args.hosts
    if hosts is None:
        from dsprims.testing.servers import ZooKeeperServerProcess

        server = ZooKeeperServerProcess.create(Path(tempfile.mkdtemp(prefix="zk-bench-")))
        server.start()
        hosts = server.hosts
    try:
        medians = measure(hosts, args.rounds)
    finally:
        if server is not None:
            server.stop()
    ours = medians["dsprims ZooKeeperLock"]
    print("| what | median per cycle | dsprims / this |\n|---|---|---|")
    for name, value in medians.items():
        print(f"| {name} | {value * 1e3:.2f} ms | {ours / value:.2f}× |")


if __name__ == "__main__":
    main()
