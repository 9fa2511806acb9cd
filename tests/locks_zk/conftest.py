"""Fixtures for the ZooKeeper lock tests: backends with chosen session timeouts."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kazoo.client import KazooClient

from dsprims import backend_from_url
from dsprims.backends.zookeeper import ZooKeeperBackend
from dsprims.testing.servers import ZooKeeperServerProcess

MakeBackend = Callable[..., ZooKeeperBackend]


@pytest.fixture
def make_backend(zookeeper_server: ZooKeeperServerProcess) -> Iterator[MakeBackend]:
    """``make_backend(session_timeout=4.0, timeout=2.0, url_suffix="")``: closed after the test."""
    made: list[ZooKeeperBackend] = []

    def make(
        session_timeout: float = 4.0, timeout: float = 2.0, url: str | None = None
    ) -> ZooKeeperBackend:
        base = url or zookeeper_server.url
        sep = "&" if "?" in base else "?"
        backend = backend_from_url(f"{base}{sep}session_timeout={session_timeout}", timeout=timeout)
        assert isinstance(backend, ZooKeeperBackend)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    """Poll ``predicate`` (correctness bound only, never a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def expire_session(hosts: str, client: KazooClient) -> None:
    """Expire ``client``'s session from the server side (a second connection with its id)."""
    session_id, password = client.client_id
    other = KazooClient(hosts=hosts, client_id=(session_id, password))
    other.start(timeout=10)
    other.stop()
    other.close()


def children(backend: ZooKeeperBackend, path: str) -> list[Any]:
    """The children of ``path`` ([] if it does not exist)."""
    from kazoo.exceptions import NoNodeError

    try:
        return list(backend.request("get_children", path, expected=(NoNodeError,)))
    except NoNodeError:
        return []
