"""pytest fixtures for dsprims and for applications built on it.

Registered automatically through the ``pytest11`` entry point when dsprims is installed.

Server fixtures start real servers once per session, on free loopback ports in temporary folders,
and hand each test a server that is running and thawed (a test may kill, freeze or restart it):

* ``redis_server`` → :class:`~dsprims.testing.servers.RedisServerProcess`
* ``redis_cluster`` → :class:`~dsprims.testing.servers.RedisClusterProcess` (3 masters)
* ``zookeeper_server`` → :class:`~dsprims.testing.servers.ZooKeeperServerProcess`
* ``zookeeper_ensemble`` → :class:`~dsprims.testing.servers.ZooKeeperEnsembleProcess` (3 peers)

Backend fixtures: ``memory_backend``, ``redis_backend``, ``redis_cluster_backend``,
``zookeeper_backend``; ``backend`` is parametrised over memory, Redis and Redis Cluster, and
``any_backend`` adds ZooKeeper. Helpers: ``manual_clock`` and ``key_prefix`` (unique per test).

When a server cannot start (binary missing, port trouble) the test is skipped with the reason,
except under ``CI=true`` (or ``DSPRIMS_REQUIRE_SERVERS=1``), where it fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import pytest

from dsprims.backends.memory import MemoryBackend
from dsprims.testing.clock import ManualClock
from dsprims.testing.servers import (
    RedisClusterProcess,
    RedisServerProcess,
    ServerStartError,
    ZooKeeperEnsembleProcess,
    ZooKeeperServerProcess,
    missing_binaries,
)

__all__ = [
    "any_backend",
    "backend",
    "key_prefix",
    "manual_clock",
    "memory_backend",
    "redis_backend",
    "redis_cluster",
    "redis_cluster_backend",
    "redis_server",
    "servers_required",
    "zookeeper_backend",
    "zookeeper_ensemble",
    "zookeeper_server",
]


def servers_required() -> bool:
    """Whether a missing server must fail the test instead of skipping it."""
    flag = os.environ.get("DSPRIMS_REQUIRE_SERVERS") or os.environ.get("CI", "")
    return flag.strip().lower() in ("1", "true", "yes")


def _unavailable(reason: str) -> NoReturn:
    if servers_required():
        pytest.fail(f"{reason} (servers are required under CI=true)", pytrace=False)
    pytest.skip(reason)


def _session_server(kind: str, factory: Callable[[Any], Any], tmp: Any) -> Iterator[Any]:
    missing = missing_binaries(kind)
    if missing:
        _unavailable(f"cannot start {kind}: missing {', '.join(missing)}")
    server = factory(tmp)
    try:
        server.start()
    except (ServerStartError, OSError) as exc:
        server.stop()
        _unavailable(f"cannot start {kind}: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def _dsprims_redis_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from _session_server(
        "redis", lambda tmp: RedisServerProcess.create(tmp), tmp_path_factory.mktemp("redis")
    )


@pytest.fixture(scope="session")
def _dsprims_redis_cluster_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from _session_server(
        "redis",
        lambda tmp: RedisClusterProcess.create(tmp),
        tmp_path_factory.mktemp("redis-cluster"),
    )


@pytest.fixture(scope="session")
def _dsprims_zookeeper_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from _session_server(
        "zookeeper", lambda tmp: ZooKeeperServerProcess.create(tmp), tmp_path_factory.mktemp("zk")
    )


@pytest.fixture(scope="session")
def _dsprims_zookeeper_ensemble_session(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Any]:
    yield from _session_server(
        "zookeeper",
        lambda tmp: ZooKeeperEnsembleProcess.create(tmp),
        tmp_path_factory.mktemp("zk-ensemble"),
    )


def _healthy(server: Any) -> Any:
    try:
        server.ensure_running()
    except (ServerStartError, OSError) as exc:
        _unavailable(f"cannot restart the test server: {exc}")
    return server


@pytest.fixture
def redis_server(_dsprims_redis_session: RedisServerProcess) -> RedisServerProcess:
    """A running standalone Redis (session-wide; restarted or thawed between tests)."""
    return _healthy(_dsprims_redis_session)  # type: ignore[no-any-return]


@pytest.fixture
def redis_cluster(_dsprims_redis_cluster_session: RedisClusterProcess) -> RedisClusterProcess:
    """A running 3-master Redis Cluster (session-wide)."""
    return _healthy(_dsprims_redis_cluster_session)  # type: ignore[no-any-return]


@pytest.fixture
def zookeeper_server(
    _dsprims_zookeeper_session: ZooKeeperServerProcess,
) -> ZooKeeperServerProcess:
    """A running standalone ZooKeeper (session-wide)."""
    return _healthy(_dsprims_zookeeper_session)  # type: ignore[no-any-return]


@pytest.fixture
def zookeeper_ensemble(
    _dsprims_zookeeper_ensemble_session: ZooKeeperEnsembleProcess,
) -> ZooKeeperEnsembleProcess:
    """A running 3-peer ZooKeeper ensemble (session-wide)."""
    return _healthy(_dsprims_zookeeper_ensemble_session)  # type: ignore[no-any-return]


@pytest.fixture
def manual_clock() -> ManualClock:
    """A :class:`~dsprims.ManualClock` starting at 1000.0 s."""
    return ManualClock(start=1000.0)


@pytest.fixture
def key_prefix() -> str:
    """A key prefix unique to this test, so tests sharing a server never see each other's keys."""
    return f"t{uuid.uuid4().hex[:16]}"


@pytest.fixture
def memory_backend() -> MemoryBackend:
    """A fresh :class:`~dsprims.MemoryBackend`."""
    return MemoryBackend()


@pytest.fixture
def redis_backend(redis_server: RedisServerProcess) -> Iterator[Any]:
    """A :class:`~dsprims.RedisBackend` on the test server, with 1 s fail-fast timeouts."""
    from dsprims.backends.url import backend_from_url

    backend = backend_from_url(redis_server.url, timeout=1.0)
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture
def redis_cluster_backend(redis_cluster: RedisClusterProcess) -> Iterator[Any]:
    """A :class:`~dsprims.RedisBackend` on the test cluster."""
    from dsprims.backends.url import backend_from_url

    backend = backend_from_url(redis_cluster.url, timeout=1.0)
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture
def zookeeper_backend(zookeeper_server: ZooKeeperServerProcess) -> Iterator[Any]:
    """A :class:`~dsprims.ZooKeeperBackend` on the test server (session timeout 4 s)."""
    from dsprims.backends.url import backend_from_url

    backend = backend_from_url(f"{zookeeper_server.url}?session_timeout=4", timeout=2.0)
    try:
        yield backend
    finally:
        backend.close()


_BACKEND_FIXTURES = {
    "memory": "memory_backend",
    "redis": "redis_backend",
    "redis_cluster": "redis_cluster_backend",
    "zookeeper": "zookeeper_backend",
}


@pytest.fixture(params=["memory", "redis", "redis_cluster"])
def backend(request: pytest.FixtureRequest) -> Any:
    """Parametrised over memory, Redis and Redis Cluster backends (conformance suites)."""
    return request.getfixturevalue(_BACKEND_FIXTURES[request.param])


@pytest.fixture(params=["memory", "redis", "redis_cluster", "zookeeper"])
def any_backend(request: pytest.FixtureRequest) -> Any:
    """Like ``backend`` plus ZooKeeper, for primitives that support all three."""
    return request.getfixturevalue(_BACKEND_FIXTURES[request.param])
