"""Contended Redis locks: 4 processes on one lock, handoff latency and round trips.

Run: ``python benchmarks/locks_contention.py [--seconds 3] [--processes 4] [--url redis://…]``
(without ``--url`` it starts a throw-away redis-server). Prints a Markdown table.

Each worker process loops acquire → tiny critical section → release on one lock name and
records, on the machine-wide monotonic clock, when it started waiting, when it got the lock and
when it began releasing. The parent merges all records: the *handoff* of a grant is the time
from the previous holder's release to this grant (only grants that waited count); the *wait* is
from the start of ``acquire`` to the grant. Round trips are the client commands each process
sent, divided by its acquisitions (the release included, and counted separately). This is a
report, not a test: timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

KINDS = ["dsprims", "python-redis-lock", "redis-py"]


def _counting_client(url: str) -> tuple[Any, list[int]]:
    """A client whose connections count the commands (round trips) they send.

    The count sits in the connection class, below both ``execute_command`` and the locks' hot
    path, so every lock keeps its fastest path and is counted alike.
    """
    import redis

    counter = [0]

    class CountingConnection(redis.Connection):
        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            counter[0] += 1
            super().send_packed_command(command, check_health)

    client = redis.Redis.from_url(url, socket_timeout=5.0, connection_class=CountingConnection)
    return client, counter


def worker(kind: str, url: str, name: str, start_at: int, seconds: float, out: str) -> None:
    client, counter = _counting_client(url)
    if kind == "dsprims":
        from dsprims.backends.redis import RedisBackend
        from dsprims.locks import RedisLock

        lock = RedisLock(name, backend=RedisBackend(client), ttl=10.0)

        def acquire() -> Any:
            return lock.acquire()

        def release(held: Any) -> None:
            held.release()

    elif kind == "python-redis-lock":
        import redis_lock

        def acquire() -> Any:
            held = redis_lock.Lock(client, name, expire=10)
            held.acquire()
            return held

        def release(held: Any) -> None:
            held.release()

    else:
        rlock = client.lock(name, timeout=10)

        def acquire() -> Any:
            rlock.acquire()
            return rlock

        def release(held: Any) -> None:
            held.release()

    records = []
    acquire_commands = 0
    while time.monotonic_ns() < start_at:
        time.sleep(0.001)
    end = start_at + int(seconds * 1e9)
    while time.monotonic_ns() < end:
        before = counter[0]
        t0 = time.monotonic_ns()
        held = acquire()
        t1 = time.monotonic_ns()
        acquire_commands += counter[0] - before
        for _ in range(100):  # a tiny critical section
            pass
        t2 = time.monotonic_ns()
        release(held)
        records.append((t0, t1, t2))
    Path(out).write_text(
        json.dumps({"records": records, "commands": counter[0], "acquire": acquire_commands})
    )


def run(kind: str, url: str, processes: int, seconds: float) -> dict[str, float]:
    name = f"contention:{kind}:{os.getpid()}:{time.time_ns()}"
    start_at = time.monotonic_ns() + int(4e9)  # time for the workers to start
    with tempfile.TemporaryDirectory() as tmp:
        outs = [os.path.join(tmp, f"{i}.json") for i in range(processes)]
        command = [sys.executable, __file__, "--worker", kind, url, name, str(start_at)]
        procs = [subprocess.Popen([*command, str(seconds), out]) for out in outs]
        for proc in procs:
            proc.wait(timeout=seconds + 60)
        data = [json.loads(Path(out).read_text()) for out in outs]
    events = sorted(
        (t1, t0, t2, worker_id) for worker_id, d in enumerate(data) for t0, t1, t2 in d["records"]
    )
    handoffs, waits = [], []
    last_release = None
    for t1, t0, t2, _ in events:
        waits.append((t1 - t0) / 1e6)
        if last_release is not None and t0 < last_release:
            handoffs.append((t1 - last_release) / 1e6)
        last_release = t2
    acquisitions = len(events)
    qs = statistics.quantiles(handoffs, n=100) if len(handoffs) >= 2 else [float("nan")] * 99
    return {
        "acquisitions": acquisitions,
        "waited": len(handoffs),
        "handoff_p50_ms": qs[49],
        "handoff_p99_ms": qs[98],
        "wait_max_ms": max(waits),
        "acquire_round_trips": sum(d["acquire"] for d in data) / acquisitions,
        "round_trips_per_cycle": sum(d["commands"] for d in data) / acquisitions,
        "per_process": min(len(d["records"]) for d in data) / max(1, acquisitions) * processes,
    }


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def uncontended(url: str, extra_urls: list[str], rounds: int = 1500) -> list[tuple[str, float]]:
    """Medians of interleaved single cycles: every candidate runs once per round, in turn, so
    that load changes on a shared machine hit all of them alike."""
    import asyncio

    import redis
    import redis.asyncio as aredis
    import redis_lock

    from dsprims import async_backend_from_url, backend_from_url
    from dsprims.locks import AsyncRedisLock, RedisLock, Redlock

    backend = backend_from_url(url)
    client = backend.client
    ours = RedisLock("u:dsprims", backend=backend)
    peer = client.lock("u:redis-py", timeout=10)
    redlock = Redlock("u:redlock", backends=[backend, *map(backend_from_url, extra_urls)])

    def prl() -> None:
        held = redis_lock.Lock(client, "u:prl", expire=10)
        held.acquire()
        held.release()

    def rp() -> None:
        peer.acquire()
        peer.release()

    candidates = {
        "PING": client.ping,
        "dsprims RedisLock": lambda: ours.acquire().release(),
        f"redis-py {redis.__version__} Lock": rp,
        "python-redis-lock": prl,
        "dsprims Redlock x3": lambda: redlock.acquire().release(),
    }
    samples: dict[str, list[float]] = {k: [] for k in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    rows = [(name, _median_us(v)) for name, v in samples.items()]

    async def async_rows() -> list[tuple[str, float]]:
        abackend = async_backend_from_url(url)
        aclient = abackend.client
        alock = AsyncRedisLock("u:async", backend=abackend)
        apeer = aredis.Redis.from_url(url).lock("u:aredis-py", timeout=10)

        async def ours_cycle() -> None:
            await (await alock.acquire()).release()

        async def peer_cycle() -> None:
            await apeer.acquire()
            await apeer.release()

        async def ping() -> None:
            await aclient.ping()

        cands = {"async PING": ping, "dsprims AsyncRedisLock": ours_cycle}
        cands["redis.asyncio Lock"] = peer_cycle
        got: dict[str, list[float]] = {k: [] for k in cands}
        for _ in range(rounds):
            for name, fn in cands.items():
                t0 = time.perf_counter()
                await fn()
                got[name].append(time.perf_counter() - t0)
        await abackend.aclose()
        return [(name, _median_us(v)) for name, v in got.items()]

    rows += asyncio.run(async_rows())
    redlock.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=6, metavar="ARG")
    parser.add_argument("--url")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--kinds", default=",".join(KINDS))
    args = parser.parse_args()
    if args.worker:
        kind, url, name, start_at, seconds, out = args.worker
        worker(kind, url, name, int(start_at), float(seconds), out)
        return
    server = None
    url = args.url
    if url is None:
        from dsprims.testing.servers import RedisServerProcess

        server = RedisServerProcess.create()
        server.start()
        url = server.url
    extra = []
    try:
        if args.url is None:
            from dsprims.testing.servers import RedisServerProcess

            extra = [RedisServerProcess.create() for _ in range(2)]
            for other in extra:
                other.start()
            medians = uncontended(url, [other.url for other in extra])
        else:
            medians = []
        kinds = args.kinds.split(",")
        rows = [(kind, run(kind, url, args.processes, args.seconds)) for kind in kinds]
    finally:
        for other in extra:
            other.stop()
        if server is not None:
            server.stop()
    if medians:
        print("Uncontended cycles (acquire + release), medians of interleaved calls\n")
        print("| what | median | / PING |")
        print("|---|---|---|")
        sync_ping = medians[0][1]
        async_ping = next(v for k, v in medians if k == "async PING")
        for name, value in medians:
            ping = async_ping if "async" in name.lower() or "asyncio" in name else sync_ping
            print(f"| {name} | {value:.0f} µs | {value / ping:.2f}x |")
        print()
    print(f"{args.processes} processes x {args.seconds:g} s on one lock\n")
    print(
        "| lock | acquisitions | waited grants | handoff p50 | handoff p99 | max wait "
        "| round trips: acquire | per cycle | fairness (min/mean share) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for kind, r in rows:
        print(
            f"| {kind} | {r['acquisitions']:.0f} | {r['waited']:.0f} | "
            f"{r['handoff_p50_ms']:.2f} ms | "
            f"{r['handoff_p99_ms']:.2f} ms | {r['wait_max_ms']:.1f} ms | "
            f"{r['acquire_round_trips']:.2f} | {r['round_trips_per_cycle']:.2f} | "
            f"{r['per_process']:.2f} |"
        )


if __name__ == "__main__":
    main()
