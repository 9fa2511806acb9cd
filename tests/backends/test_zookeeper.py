"""ZooKeeper backend conformance: paths, ACLs, outages, ensembles."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kazoo.exceptions import NoAuthError, NoNodeError

from dsprims import BackendError, BackendUnavailable, backend_from_url
from dsprims.backends.zookeeper import ZooKeeperBackend
from dsprims.testing.servers import ZooKeeperServerProcess

pytestmark = pytest.mark.zookeeper


def test_paths_keep_hostile_names_inside_the_prefix(
    zookeeper_backend: ZooKeeperBackend, key_prefix: str
) -> None:
    client = zookeeper_backend.client
    names = ["a/b", "..", ".", "%2F", "x" * 300, "line\nbreak", "{}"]
    for name in names:
        path = zookeeper_backend.path(key_prefix, name, "node")
        zookeeper_backend.request("create", path, b"v", makepath=True)
    children = client.get_children(f"/{key_prefix}")
    assert len(children) == len(names)
    root = client.get_children("/")
    assert key_prefix in root
    assert not {"a", "b", "node", "x" * 300} & set(root)  # nothing escaped to the root


def test_chroot_and_digest_acl(zookeeper_server: ZooKeeperServerProcess, key_prefix: str) -> None:
    url = f"{zookeeper_server.url}/{key_prefix}-root?digest=alice:secret"
    backend = backend_from_url(url, timeout=2.0)
    try:
        path = backend.path(key_prefix, "guarded", "node")
        backend.request("create", path, b"v", makepath=True)
    finally:
        backend.close()
    stranger = zookeeper_server.client()
    try:
        with pytest.raises(NoAuthError):
            stranger.set(f"/{key_prefix}-root{path}", b"overwrite")
    finally:
        stranger.stop()
        stranger.close()


def test_killed_server_raises_unavailable_within_the_timeout(
    zookeeper_server: ZooKeeperServerProcess,
) -> None:
    backend = backend_from_url(f"{zookeeper_server.url}?session_timeout=4", timeout=1.0)
    try:
        assert backend.ping()
        zookeeper_server.kill()
        started = time.monotonic()
        with pytest.raises(BackendUnavailable):
            backend.request("get", "/")
        assert time.monotonic() - started <= 1.0 + 1.0
    finally:
        backend.close()


def test_frozen_server_raises_unavailable_within_the_timeout(
    zookeeper_server: ZooKeeperServerProcess,
) -> None:
    backend = backend_from_url(f"{zookeeper_server.url}?session_timeout=4", timeout=1.0)
    try:
        assert backend.ping()
        with zookeeper_server.frozen_for_a_while():
            started = time.monotonic()
            with pytest.raises(BackendUnavailable):
                backend.request("get", "/")
            assert time.monotonic() - started <= 1.0 + 1.0
    finally:
        backend.close()


def test_other_errors_are_backend_errors(zookeeper_backend: ZooKeeperBackend) -> None:
    with pytest.raises(BackendError) as info:
        zookeeper_backend.request("set", "/", b"x", version=12345)
    assert not isinstance(info.value, BackendUnavailable)
    with pytest.raises(NoNodeError):
        zookeeper_backend.request("get", "/no/such/node", expected=(NoNodeError,))


def test_ensemble_keeps_serving_with_one_peer_killed(
    zookeeper_ensemble: Any, key_prefix: str
) -> None:
    backend = backend_from_url(f"{zookeeper_ensemble.url}?session_timeout=6", timeout=3.0)
    try:
        backend.request("create", f"/{key_prefix}/before", b"1", makepath=True)
        zookeeper_ensemble.nodes[0].kill()
        deadline = time.monotonic() + 20
        while True:
            try:
                backend.request("create", f"/{key_prefix}/after", b"2", makepath=True)
                break
            except BackendUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert sorted(backend.request("get_children", f"/{key_prefix}")) == ["after", "before"]
    finally:
        backend.close()
        zookeeper_ensemble.ensure_running()


def test_rejects_non_kazoo_clients() -> None:
    with pytest.raises(TypeError, match="client"):
        ZooKeeperBackend("zookeeper://x")


def test_requests_resume_after_a_restart(zookeeper_server: ZooKeeperServerProcess) -> None:
    backend = backend_from_url(f"{zookeeper_server.url}?session_timeout=4", timeout=1.0)
    try:
        assert backend.ping()
        zookeeper_server.restart()
        deadline = time.monotonic() + 15
        while True:
            try:
                assert backend.ping()
                break
            except BackendUnavailable:
                # kazoo reconnects in the background; until then requests fail fast.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert backend.request("exists", "/zookeeper") is not None
    finally:
        backend.close()
