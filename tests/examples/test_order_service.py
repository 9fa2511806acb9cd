"""The example service (examples/order_service.py) end to end over HTTP, on every backend."""

from __future__ import annotations

import http.client
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dsprims import ManualClock, MemoryBackend

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))

from order_service import OrderService, serve


def _request(port: int, method: str, path: str, **headers: str) -> tuple[int, Any, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers=headers)
        response = conn.getresponse()
        return response.status, response.headers, json.loads(response.read())
    finally:
        conn.close()


@pytest.fixture
def running() -> Iterator[Any]:
    started = []

    def start(service: OrderService) -> int:
        server = serve(service, port=0)
        started.append((server, service))
        return int(server.server_address[1])

    yield start
    for server, service in started:
        server.shutdown()
        server.server_close()
        service.close()


def test_rate_limit_headers_and_429(running: Any) -> None:
    clock = ManualClock()
    port = running(OrderService(rate=1.0, burst=3, clock=clock))
    statuses = [_request(port, "GET", "/orders/alice", **{"X-Client-Id": "c1"}) for _ in range(4)]
    assert [s for s, _, _ in statuses] == [200, 200, 200, 429]
    _, headers, body = statuses[0]
    assert headers["RateLimit-Limit"] == "3"
    assert headers["RateLimit-Remaining"] == "2"
    assert body["shard"].startswith("orders-db-")
    assert headers["HLC"]
    assert int(statuses[3][1]["Retry-After"]) >= 1
    # Another client has its own bucket; time refills the first one.
    assert _request(port, "GET", "/orders/alice", **{"X-Client-Id": "c2"})[0] == 200
    clock.advance(1.0)
    assert _request(port, "GET", "/orders/alice", **{"X-Client-Id": "c1"})[0] == 200


def test_breaker_fails_fast_then_recovers(running: Any) -> None:
    clock = ManualClock()
    service = OrderService(rate=1000.0, burst=1000, clock=clock)
    port = running(service)
    assert _request(port, "POST", "/upstream/down")[0] == 200
    statuses = [_request(port, "GET", f"/orders/u{i}")[0] for i in range(8)]
    assert statuses[:4] == [502, 502, 502, 502]  # the calls that trip it fail on their own
    assert set(statuses[4:]) == {503}  # then the breaker answers without calling upstream
    calls_while_open = service.upstream.calls
    status, headers, _ = _request(port, "GET", "/orders/x")
    assert status == 503
    assert int(headers["Retry-After"]) >= 1
    assert service.upstream.calls == calls_while_open
    _request(port, "POST", "/upstream/up")
    clock.advance(5.0)  # open_duration: the next call is the half-open trial
    assert _request(port, "GET", "/orders/x")[0] == 200
    assert _request(port, "GET", "/orders/y")[0] == 200


def test_paused_report_replica_is_fenced_off_in_memory() -> None:
    clock = ManualClock()
    shared = MemoryBackend()
    replica_a = OrderService(clock=clock, shared_memory=shared, lock_ttl=10.0)
    replica_b = OrderService(clock=clock, shared_memory=shared, lock_ttl=10.0)
    outcome_b: list[Any] = []

    def long_pause() -> None:
        clock.advance(11.0)  # A stalls past its lease...
        outcome_b.append(replica_b.run_report("replica-b"))  # ...and B takes over

    status_a, _, body_a = replica_a.run_report("replica-a", pause=long_pause)
    status_b, _, body_b = outcome_b[0]
    assert status_b == 200
    assert status_a == 409
    assert body_a["error"] == "stale fencing token"
    assert body_b["token"] > body_a["token"]
    latest = replica_a.reports.read("latest")
    assert isinstance(latest, str)
    assert json.loads(latest)["by"] == "replica-b"


@pytest.mark.redis
def test_replicas_share_state_through_redis(running: Any, redis_server: Any) -> None:
    url = redis_server.url
    port_a = running(OrderService(backend_url=url, rate=0.01, burst=2, lock_ttl=0.3))
    port_b = running(OrderService(backend_url=url, rate=0.01, burst=2, lock_ttl=0.3))
    client = {"X-Client-Id": f"redis-{time.monotonic_ns()}"}
    # One bucket across both replicas: the third request is refused whichever replica gets it.
    assert _request(port_a, "GET", "/orders/alice", **client)[0] == 200
    assert _request(port_b, "GET", "/orders/alice", **client)[0] == 200
    assert _request(port_a, "GET", "/orders/alice", **client)[0] == 429
    first = _request(port_a, "POST", "/jobs/report")[2]["token"]
    second = _request(port_b, "POST", "/jobs/report")[2]["token"]
    assert second > first


@pytest.mark.redis
def test_paused_report_replica_is_fenced_off_on_redis(redis_server: Any) -> None:
    url = redis_server.url
    replica_a = OrderService(backend_url=url, lock_ttl=0.3)
    replica_b = OrderService(backend_url=url, lock_ttl=0.3)
    outcome_b: list[Any] = []

    def long_pause() -> None:
        time.sleep(0.5)  # a real pause past the 0.3 s lease: the Redis key expires
        outcome_b.append(replica_b.run_report("replica-b"))

    try:
        status_a, _, body_a = replica_a.run_report("replica-a", pause=long_pause)
        assert outcome_b[0][0] == 200
        assert status_a == 409
        assert outcome_b[0][2]["token"] > body_a["token"]
    finally:
        replica_a.close()
        replica_b.close()


@pytest.mark.zookeeper
def test_report_lock_on_zookeeper(running: Any, zookeeper_server: Any) -> None:
    port = running(OrderService(zookeeper_url=f"{zookeeper_server.url}?session_timeout=4"))
    first = _request(port, "POST", "/jobs/report")
    second = _request(port, "POST", "/jobs/report")
    assert first[0] == second[0] == 200
    assert second[2]["token"] > first[2]["token"]
    assert second[2]["report"]["token"] == second[2]["token"]
