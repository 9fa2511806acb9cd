"""Acceptance: pause, restart, contention and ensemble, with child processes and signals."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kazoo.exceptions import NoNodeError

from dsprims import (
    AsyncFencedStore,
    BackendUnavailable,
    FencedStore,
    MemoryBackend,
    StaleTokenError,
    backend_from_url,
)
from dsprims.backends.zookeeper import ZooKeeperBackend
from dsprims.locks.fenced_zookeeper import ZooKeeperFence
from dsprims.locks.zookeeper import ZooKeeperLock
from dsprims.testing.servers import ZooKeeperServerProcess, _send
from tests.locks import write_outcome

from .conftest import MakeBackend, children, wait_until

pytestmark = [pytest.mark.zookeeper, pytest.mark.slow]

CHILD = str(Path(__file__).with_name("child.py"))


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, CHILD, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    text = proc.stdout.readline().strip()
    assert text, f"child exited early with {proc.poll()}"
    return text


def finish(proc: subprocess.Popen[str]) -> None:
    with proc:  # closes the pipes
        os.kill(proc.pid, signal.SIGCONT) if proc.poll() is None else None
        proc.kill()
        proc.wait(10)


def tell(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


@pytest.mark.parametrize("resource", ["zookeeper", "zookeeper-again", "redis"])
def test_paused_holder_loses_and_its_stale_write_is_rejected(
    zookeeper_server: ZooKeeperServerProcess,
    make_backend: MakeBackend,
    key_prefix: str,
    resource: str,
    request: pytest.FixtureRequest,
) -> None:
    if resource == "redis":
        resource_url = request.getfixturevalue("redis_server").url
        store_backend: Any = backend_from_url(resource_url, timeout=1.0)
    else:
        resource_url = "zk"
        store_backend = None
    child = spawn("hold", f"{zookeeper_server.url}?session_timeout=1", key_prefix, resource_url)
    try:
        held, token = line(child).split()
        assert held == "HELD"
        os.kill(child.pid, signal.SIGSTOP)
        backend = make_backend(session_timeout=4.0)
        # The paused child's session expires after ~1 s; then this process gets the lock.
        lease = ZooKeeperLock("paused", backend=backend, prefix=key_prefix).acquire(timeout=30)
        assert lease.token > int(token)
        store = FencedStore("acct", backend=store_backend or backend, prefix=key_prefix)
        store.write("balance", f"fresh-{lease.token}", lease.token)
        os.kill(child.pid, signal.SIGCONT)
        tell(child)
        assert line(child) == "LOST True"
        assert line(child) == "WRITE stale"
        assert line(child) == "RELEASE lost"
        assert store.read("balance") == f"fresh-{lease.token}"  # zero stale writes accepted
        lease.release()
    finally:
        finish(child)
        if store_backend is not None:
            store_backend.close()


def _requests_from(port: int, session_id: int) -> int:
    """How many packets the server received on the connection of ``session_id`` (4lw ``cons``)."""
    for row in _send(port, b"cons", timeout=2.0).decode().splitlines():
        if f"sid=0x{session_id:x}," in row:
            found = re.search(r"recved=(\d+)", row)
            assert found is not None, row
            return int(found.group(1))
    raise AssertionError(f"no connection of session 0x{session_id:x} in cons")


def test_a_killed_holder_is_noticed_within_the_session_timeout_without_polling(
    zookeeper_server: ZooKeeperServerProcess, make_backend: MakeBackend, key_prefix: str
) -> None:
    """SIGKILL a holder (no release, no goodbye): its session expires after the session
    timeout, its ephemeral node goes, and the waiter watching it is woken by that (no polling).
    """
    holder_session = 2.0
    child = spawn(
        "hold", f"{zookeeper_server.url}?session_timeout={holder_session}", key_prefix, "zk"
    )
    try:
        held, token = line(child).split()
        assert held == "HELD"
        backend = make_backend(session_timeout=4.0)
        lock = ZooKeeperLock("paused", backend=backend, prefix=key_prefix)
        granted: list[tuple[float, Any]] = []

        def wait_for_the_lock() -> None:
            lease = lock.acquire(timeout=60)
            granted.append((time.monotonic(), lease))

        waiter = threading.Thread(target=wait_for_the_lock)
        waiter.start()
        assert wait_until(lambda: len(children(backend, lock.path)) == 2, timeout=15)
        session_id = backend.client.client_id[0]
        before = _requests_from(zookeeper_server.port, session_id)
        killed_at = time.monotonic()
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        waiter.join(60)
        assert granted, "the waiter was never granted the lock"
        at, lease = granted[0]
        # A generous correctness bound: the session timeout plus the server's expiry tick and
        # scheduling noise (the server expires sessions in ticks of tickTime).
        assert at - killed_at <= holder_session + 4.0
        assert lease.token > int(token)
        sent = _requests_from(zookeeper_server.port, session_id) - before
        # Waiting sent nothing but kazoo's pings (one per ~1.3 s for a 4 s session), the
        # listing after the watch fired, and this check's own reads; a 100 ms poller would
        # have sent ~10 per second.
        assert sent <= 6 + 2 * (time.monotonic() - killed_at)
        lease.release()
    finally:
        finish(child)


def test_interpreter_exit_deletes_idle_lock_znodes(
    zookeeper_server: ZooKeeperServerProcess, make_backend: MakeBackend, key_prefix: str
) -> None:
    child = spawn("idle-exit", zookeeper_server.url, key_prefix)
    try:
        idle, path = line(child).split()
        assert idle == "IDLE"
        assert child.wait(30) == 0
    finally:
        finish(child)
    backend = make_backend()
    assert backend.request("exists", path) is None  # deleted at exit, not 60 s later
    assert children(backend, f"/{key_prefix}") == []


def test_tokens_keep_increasing_across_a_kill_and_restart(
    zookeeper_server: ZooKeeperServerProcess, make_backend: MakeBackend, key_prefix: str
) -> None:
    backend = make_backend(session_timeout=4.0)
    lock = ZooKeeperLock("restart", backend=backend, prefix=key_prefix)
    before = lock.acquire(timeout=5)
    before.release()
    zookeeper_server.kill()
    zookeeper_server.restart()
    fresh = make_backend(session_timeout=4.0)
    # Delete the lock znode (unless its idle cleanup already did): its sequence counter
    # restarts at 0, the token must not.
    with contextlib.suppress(NoNodeError):
        fresh.request("delete", lock.path, expected=(NoNodeError,))
    after = ZooKeeperLock("restart", backend=fresh, prefix=key_prefix).acquire(timeout=10)
    assert after.owner.endswith("0000000000")
    assert after.token > before.token
    after.release()


#: The acceptance criterion: 4 processes x 5 s of read-modify-write under the lock.
CONTENDERS = 4
CONTENTION_SECONDS = 5.0


def test_four_processes_read_modify_write_without_lost_updates(
    zookeeper_server: ZooKeeperServerProcess, make_backend: MakeBackend, key_prefix: str
) -> None:
    backend = make_backend()
    backend.request("create", f"/{key_prefix}-counter", b"0")
    kids: list[subprocess.Popen[str]] = []
    try:
        for _ in range(CONTENDERS):  # spawned inside the try: a failed spawn still reaps the rest
            kids.append(spawn("count", zookeeper_server.url, key_prefix, str(CONTENTION_SECONDS)))
        for kid in kids:
            assert line(kid) == "READY"
        for kid in kids:
            tell(kid)
        reports = [line(kid).split() for kid in kids]
    finally:
        for kid in kids:
            finish(kid)
    assert all(report[0] == "DONE" for report in reports)
    done = [int(report[1]) for report in reports]
    # Each child really ran for the full duration (a lower bound, not a speed assertion).
    assert all(float(report[2]) >= CONTENTION_SECONDS for report in reports)
    data, _ = backend.request("get", f"/{key_prefix}-counter")
    assert all(n > 0 for n in done)  # FIFO: nobody starved
    assert int(data) == sum(done)  # zero lost updates
    # The children deleted the idle lock znode (cleanup_delay=0): nothing is left under the prefix.
    assert wait_until(lambda: children(backend, f"/{key_prefix}") == [], timeout=15)


def test_fenced_store_rejects_lower_tokens_on_zookeeper(
    zookeeper_backend: ZooKeeperBackend, key_prefix: str
) -> None:
    store = FencedStore("ns", backend=zookeeper_backend, prefix=key_prefix)
    other = ZooKeeperFence("ns", zookeeper_backend, prefix=key_prefix)
    assert store.read("k") is None
    store.write("k", b"\x00\xffbytes", 5)
    assert store.read("k") == b"\x00\xffbytes"
    store.write("k", "text", 5)  # equal tokens are accepted
    assert store.read("k") == "text"
    other.write("k", "newer", 9)  # another writer moves the znode on
    with pytest.raises(StaleTokenError):
        store.write("k", "old", 7)  # this writer's cached version is stale: it re-reads
    assert store.read("k") == "newer"
    assert other.highest_token("k") == 9
    with pytest.raises(StaleTokenError):
        other.write("k", "older", 8)


async def test_async_fenced_store_on_zookeeper(
    zookeeper_backend: ZooKeeperBackend, key_prefix: str
) -> None:
    store = AsyncFencedStore("ns", backend=zookeeper_backend, prefix=key_prefix)
    await store.write("k", "v1", 10)
    with pytest.raises(StaleTokenError):
        await store.write("k", "v0", 9)
    assert await store.read("k") == "v1"
    assert zookeeper_backend.request("exists", f"/{key_prefix}/fenced:ns/k") is not None


def test_ensemble_lock_survives_killing_the_leader(
    zookeeper_ensemble: Any, key_prefix: str
) -> None:
    backend = backend_from_url(f"{zookeeper_ensemble.url}?session_timeout=6", timeout=3.0)
    assert isinstance(backend, ZooKeeperBackend)
    try:
        lock = ZooKeeperLock("ens", backend=backend, prefix=key_prefix)
        first = lock.acquire(timeout=10)
        first.release()
        leader = next(
            node
            for node in zookeeper_ensemble.nodes
            if b"Mode: leader" in _send(node.port, b"srvr", timeout=2.0)
        )
        leader.kill()
        deadline = time.monotonic() + 30
        while True:
            try:
                second = lock.acquire(timeout=10)
                break
            except BackendUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert second.token > first.token
        assert second.token >> 32 > first.token >> 32  # a new leader starts a new epoch
        assert not second.lost
        second.release()
        assert children(backend, lock.path) == []
    finally:
        backend.close()
        zookeeper_ensemble.ensure_running()


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 6), st.booleans()),
        min_size=1,
        max_size=12,
    )
)
def test_zookeeper_fence_agrees_with_the_memory_fence(
    zookeeper_backend: ZooKeeperBackend, ops: list[tuple[str, int, bool]]
) -> None:
    import uuid

    prefix = f"t{uuid.uuid4().hex[:12]}"
    memory = FencedStore("diff", backend=MemoryBackend())
    zk = FencedStore("diff", backend=zookeeper_backend, prefix=prefix)
    # A second writer on the same znodes makes the versioned CAS path run too.
    other = ZooKeeperFence("diff", zookeeper_backend, prefix=prefix)
    for i, (key, token, via_other) in enumerate(ops):
        value = f"v{i}" if i % 2 else f"v{i}".encode()
        outcomes = [
            write_outcome(store, key, value, token)
            for store in (memory, other if via_other else zk)
        ]
        assert outcomes[0] == outcomes[1], (key, token)
    for key in ("a", "b"):
        assert memory.read(key) == zk.read(key)
