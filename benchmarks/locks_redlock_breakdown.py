"""Where a Redlock x3 acquire+release goes: the cycle against its floors, layer by layer.

Run: ``python benchmarks/locks_redlock_breakdown.py [--seconds 6]`` (starts three throw-away
redis-servers). Prints a Markdown table of interleaved medians (every row alternates with the
others, ``benchmarks.conftest.run_interleaved``), each row adding one layer to the one before:

1. a redis-py PING (the floor of the issue's goal);
2. two fan-outs of PING to the three servers on plain sockets (the cycle's I/O, no script);
3. the same with ``EVALSHA`` of ``return 1`` (the cost of running any script);
4. the same with the cycle's exact acquire and release commands (no client logic);
5. the least Python a full cycle can run: fresh secrets, packing, parsing, the core's quorum
   decision, a lease with its watchdog entry, on plain sockets;
6. ``Redlock`` itself, and ``RedisLock`` on one server for scale.

Then client CPU per cycle (``time.process_time``) and the servers' own time per command
(``INFO commandstats``). Loopback latency on a shared VM is bimodal (busy: vCPUs spinning,
short round trips; idle: wake-up latency), so run it in both states, e.g. with a spinning
process in the background for the busy one. This is a report, not a test.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.conftest import Contender, run_interleaved


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="interleaved run budget")
    options = parser.parse_args()

    import redis

    from dsprims import backend_from_url
    from dsprims.locks import RedisLock, Redlock
    from dsprims.locks._direct import pack_tail
    from dsprims.locks._direct import parse_reply as _parse
    from dsprims.locks._lock import _new_owner, _new_ticket
    from dsprims.locks.core import quorum_outcome
    from dsprims.locks.redlock import ACQUIRE, RELEASE
    from dsprims.testing.servers import RedisServerProcess

    servers = [RedisServerProcess.create() for _ in range(3)]
    for server in servers:
        server.start()
    try:
        backends = [backend_from_url(s.url) for s in servers]
        lock = Redlock("breakdown", backends=backends, prefix="bench")
        single = RedisLock("breakdown1", backend=backends[0], prefix="bench")
        client = redis.Redis(host="127.0.0.1", port=servers[0].port)
        for _ in range(50):
            lock.acquire().release()
            single.acquire().release()
        store = lock._redlock_store
        plan, pool, scripts = store.plan, store.servers, store.plan.scripts
        owner = "f" * 32

        acquire = pool.packed(ACQUIRE, plan.acquire_bodies(owner, ""))
        release = pool.packed(RELEASE, plan.release_bodies(owner))
        socks = [_connect(s.port) for s in servers]
        one = client.script_load("return 1")
        ret1 = b"*3\r\n$7\r\nEVALSHA\r\n$40\r\n" + one.encode() + b"\r\n$1\r\n0\r\n"
        for sock in socks:
            sock.sendall(b"*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n$8\r\nreturn 1\r\n")
            sock.recv(100)
        ping = b"*1\r\n$4\r\nPING\r\n"

        def rounds(first: list[bytes], second: list[bytes]) -> Callable[[], None]:
            def run() -> None:
                for commands in (first, second):
                    for sock, command in zip(socks, commands, strict=True):
                        sock.sendall(command)
                    for sock in socks:
                        sock.recv(4096)

            return run

        # The minimal cycle, on its own sockets in timeout mode like the lock's connections.
        mine = [_connect(s.port) for s in servers]
        for sock in mine:
            sock.settimeout(0.5)
        owner_b = b"$32\r\n" + owner.encode() + b"\r\n"
        head_a = acquire[0][: acquire[0].index(owner_b)]
        head_r = release[0][: release[0].index(owner_b)]
        tail_a = pack_tail([scripts.acquire_tail()])
        tail_r = pack_tail([scripts.release_tail()])
        ttl, drift = plan.params.ttl, plan.params.clock_drift

        def minimal() -> None:
            me, ticket = _new_owner(), _new_ticket()
            who = b"$32\r\n" + me.encode() + b"\r\n"
            start = time.monotonic()
            mine[0].sendall(head_a + who + b"$16\r\n" + ticket.encode() + b"\r\n" + tail_a)
            rest = head_a + who + b"$0\r\n\r\n" + tail_a
            mine[1].sendall(rest)
            mine[2].sendall(rest)
            decisions = [scripts.acquire_result(_parse(s.recv(4096), 0)[0]) for s in mine]
            decision = quorum_outcome(decisions, time.monotonic() - start, ttl, drift)
            assert decision.granted
            lease = lock._grant(me, decision.token, start, ttl)
            command = head_r + who + tail_r
            for sock in mine:
                sock.sendall(command)
            assert sum(_parse(s.recv(4096), 0)[0] == 1 for s in mine) == 3
            lease._finish_release()

        pings, ones = [ping] * 3, [ret1] * 3
        contenders = [
            Contender("ours", "Redlock acquire + release", lambda: lock.acquire().release()),
            Contender("floor", "redis-py PING", client.ping),
            Contender("floor", "raw sockets: 2 fan-outs of PING x3", rounds(pings, pings)),
            Contender(
                "floor", "raw sockets: 2 fan-outs of EVALSHA 'return 1' x3", rounds(ones, ones)
            ),
            Contender(
                "floor",
                "raw sockets: 2 fan-outs of the cycle's scripts x3",
                rounds(acquire, release),
            ),
            Contender("floor", "minimal-Python full cycle", minimal),
            Contender(
                "peer", "RedisLock acquire + release (1 server)", lambda: single.acquire().release()
            ),
        ]
        rows = run_interleaved(contenders, budget_seconds=options.seconds)
        floor = next(r["median"] for r in rows if r["label"] == "redis-py PING")
        print("| row | median | × PING | Redlock / row |\n|---|---|---|---|")
        for row in rows:
            ratio = f"{row['ratio']:.2f}" if "ratio" in row else ""
            median = row["median"]
            print(f"| {row['label']} | {median * 1e6:.1f} µs | {median / floor:.2f} | {ratio} |")

        print("\n| client CPU per cycle | µs |\n|---|---|")
        for label, fn in (
            ("Redlock", lambda: lock.acquire().release()),
            ("raw sockets, the cycle's scripts", rounds(acquire, release)),
            ("minimal-Python full cycle", minimal),
        ):
            samples = []
            for _ in range(5):
                began = time.process_time()
                for _ in range(400):
                    fn()
                samples.append((time.process_time() - began) / 400 * 1e6)
            print(f"| {label} | {statistics.median(samples):.1f} |")

        server, sock = backends[1].client, socks[1]
        print("\n| server time per command (INFO commandstats) | µs |\n|---|---|")
        for label, commands, stat in (
            ("lock acquire + release scripts, per script", (acquire[1], release[1]), "evalsha"),
            ("EVALSHA 'return 1'", (ret1,), "evalsha"),
            ("PING", (ping,), "ping"),
        ):
            server.config_resetstat()
            for _ in range(1000):
                for command in commands:
                    sock.sendall(command)
                    sock.recv(4096)
            usec = server.info("commandstats")[f"cmdstat_{stat}"]["usec_per_call"]
            print(f"| {label} | {usec} |")
        for sock in [*socks, *mine]:
            sock.close()
        lock.close()
        client.close()
        for backend in backends:
            backend.close()
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    main()
