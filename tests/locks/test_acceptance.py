"""Acceptance on a real Redis: pause (SIGSTOP), restart (kill -9), contention, cancellation."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dsprims import LockLost, async_backend_from_url, backend_from_url
from dsprims.locks import AsyncRedisLock, FencedStore, LeaseBase, RedisLock
from tests.locks import leftover_keys

pytestmark = pytest.mark.redis

CHILD = str(Path(__file__).with_name("child.py"))


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, CHILD, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


def _line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line, f"child exited early with {proc.wait()}"
    return line


@pytest.mark.slow
def test_paused_holder_loses_the_lock_and_its_write_is_fenced(
    redis_server: Any, key_prefix: str
) -> None:
    backend = backend_from_url(redis_server.url)
    lock = RedisLock("paused", backend=backend, ttl=5.0, prefix=key_prefix)
    store = FencedStore("pause", backend=backend, prefix=key_prefix)
    stale_writes_accepted = 0
    for _ in range(3):
        child = _spawn("holder", redis_server.url, key_prefix, "0.5")
        try:
            first_token = int(_line(child).split()[1])
            os.kill(child.pid, signal.SIGSTOP)
            try:
                # The holder cannot renew while stopped: its lease runs out and we get the lock.
                lease = lock.acquire(timeout=10)
                assert lease.token > first_token
                store.write("resource", f"from {lease.token}", lease.token)
            finally:
                os.kill(child.pid, signal.SIGCONT)
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
            assert _line(child) == "lost True"
            outcome = _line(child)
            stale_writes_accepted += outcome == "written"
            assert store.read("resource") == f"from {lease.token}"
            lease.release()
        finally:
            _stop(child)
    assert stale_writes_accepted == 0
    backend.close()


@pytest.mark.slow
def test_tokens_keep_increasing_across_a_restart_and_the_holder_learns(
    redis_server: Any, key_prefix: str
) -> None:
    backend = backend_from_url(redis_server.url)
    lost = threading.Event()
    seen: list[LeaseBase] = []

    def on_lost(lease: LeaseBase) -> None:
        seen.append(lease)
        lost.set()

    watched = RedisLock("w", backend=backend, ttl=1.0, prefix=key_prefix, on_lost=on_lost)
    plain = RedisLock("r", backend=backend, ttl=30.0, auto_renew=False, prefix=key_prefix)
    tokens = []
    for _ in range(2):
        lease = plain.acquire()
        tokens.append(lease.token)
        renewed = watched.acquire()
        redis_server.restart()  # kill -9: the server keeps nothing on disk
        # The explicit check: the lock key vanished, so extend refuses and the lease is lost.
        with pytest.raises(LockLost):
            lease.extend()
        assert lease.lost
        # The watchdog finds out at its next renewal and fires on_lost.
        assert lost.wait(5)
        assert seen[-1] is renewed
        lost.clear()
    third = plain.acquire()
    tokens.append(third.token)
    assert tokens == sorted(tokens)
    assert len(set(tokens)) == len(tokens)
    third.release()
    backend.close()


#: The acceptance criterion: 4 processes x 5 s of read-modify-write under the lock.
CONTENDERS = 4
CONTENTION_SECONDS = 5.0


def run_contention(role: str, url: str, prefix: str) -> list[int]:
    """Run CONTENDERS ``child.py`` counters for CONTENTION_SECONDS; their increment counts.

    The children are always killed and reaped, also when a spawn or a read fails.
    """
    children: list[subprocess.Popen[str]] = []
    try:
        for _ in range(CONTENDERS):  # spawned inside the try: a failed spawn still reaps the rest
            children.append(_spawn(role, url, prefix, str(CONTENTION_SECONDS)))
        for child in children:
            assert _line(child) == "ready"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        reports = [_line(child).split() for child in children]
    finally:
        for child in children:
            _stop(child)
    assert all(report[0] == "done" for report in reports)
    # Each child really ran for the full duration (a lower bound, not a speed assertion).
    assert all(float(report[2]) >= CONTENTION_SECONDS for report in reports)
    return [int(report[1]) for report in reports]


@pytest.mark.slow
def test_four_processes_never_lose_an_update(redis_server: Any, key_prefix: str) -> None:
    done = run_contention("counter", redis_server.url, key_prefix)
    client = redis_server.client()
    assert int(client.get(f"{key_prefix}:plain-counter")) == sum(done)  # zero lost updates
    assert all(n > 0 for n in done)  # FIFO: nobody starved
    client.close()


@pytest.mark.slow
async def test_cancelled_acquires_leave_nothing_behind(redis_server: Any, key_prefix: str) -> None:
    backend = async_backend_from_url(redis_server.url)
    lock = AsyncRedisLock("storm", backend=backend, ttl=10.0, prefix=key_prefix)
    rng = random.Random(11)
    holder = await lock.acquire()
    stop = asyncio.Event()

    async def churn() -> None:
        # Real contention: the holder hands the lock over now and then.
        nonlocal holder
        while not stop.is_set():
            await asyncio.sleep(0.005)
            await holder.release()
            holder = await lock.acquire()

    async def contender() -> int:
        try:
            lease = await asyncio.wait_for(lock.acquire(), rng.uniform(0.0, 0.05))
        except TimeoutError:
            return 0
        await lease.release()
        return 1

    churner = asyncio.ensure_future(churn())
    results = []
    # 50 at a time: each blocked waiter holds one pooled connection (redis-py's pool has 100).
    for _ in range(20):
        results += await asyncio.gather(*(contender() for _ in range(50)))
    stop.set()
    await churner
    await lock.settle()
    assert len(results) == 1000
    sync = redis_server.client()
    keys = leftover_keys(sync, key_prefix)
    assert keys == [f"{key_prefix}:{{storm}}:lock".encode()]  # only the holder's key
    await holder.release()
    assert leftover_keys(sync, key_prefix) == []
    start = time.monotonic()
    lease = await lock.acquire(timeout=0)
    assert time.monotonic() - start < 1.0
    await lease.release()
    sync.close()
    await backend.aclose()
