"""An order-lookup HTTP service built from dsprims primitives (see examples/README.md).

Endpoints:

* ``GET /orders/<customer>``: routes the customer to a shard with a :class:`~dsprims.HashRing`,
  limits each client with a :class:`~dsprims.TokenBucket` (429 + ``Retry-After`` when limited),
  asks a flaky upstream through a :class:`~dsprims.CircuitBreaker` (503 while it is open).
* ``POST /jobs/report``: runs the "nightly report" under a lock and writes its result through a
  :class:`~dsprims.FencedStore`, so a replica that was paused past its lease cannot overwrite a
  newer report.
* ``POST /upstream/<up|down>``: switches the simulated upstream, to watch the breaker work.

Every response carries an ``HLC`` header from a :class:`~dsprims.HybridLogicalClock`.
Run ``python examples/order_service.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dsprims
from dsprims import (
    CircuitBreaker,
    CircuitOpenError,
    FencedStore,
    HashRing,
    HybridLogicalClock,
    LockNotAcquired,
    StaleTokenError,
    TokenBucket,
)

SHARDS = ("orders-db-1", "orders-db-2", "orders-db-3")


class UpstreamDown(Exception):
    """The simulated inventory service failed."""


@dataclass
class Upstream:
    """A stand-in for a remote inventory service that can be switched off."""

    healthy: bool = True
    calls: int = 0

    def stock_for(self, customer: str) -> int:
        self.calls += 1
        if not self.healthy:
            raise UpstreamDown("inventory service timed out")
        return len(customer) * 7 % 50


@dataclass
class OrderService:
    """The service's state: primitives wired to one backend (and optionally ZooKeeper)."""

    backend_url: str = "memory://"
    zookeeper_url: str | None = None
    rate: float = 5.0
    burst: int = 10
    lock_ttl: float = 10.0
    clock: Any = None
    upstream: Upstream = field(default_factory=Upstream)
    #: Replicas of one process share a MemoryBackend by passing it here (tests do).
    shared_memory: Any = None

    def __post_init__(self) -> None:
        clock_kw: dict[str, Any] = {} if self.clock is None else {"clock": self.clock}
        if self.backend_url == "memory://" and self.shared_memory is not None:
            self.backend = self.shared_memory
        else:
            self.backend = dsprims.backend_from_url(self.backend_url)
        self.ring = HashRing(SHARDS)
        self.limiter = TokenBucket(
            self.rate, self.burst, backend=self.backend, prefix="orders-rl", **clock_kw
        )
        self.breaker = CircuitBreaker(
            "inventory",
            failure_rate_threshold=0.5,
            minimum_calls=4,
            window_size=10,
            open_duration=5.0,
            record=(UpstreamDown,),
            **clock_kw,
        )
        self.hlc = HybridLogicalClock(**clock_kw)
        self.lock_backend = (
            dsprims.backend_from_url(self.zookeeper_url) if self.zookeeper_url else self.backend
        )
        self.report_lock = _make_lock("nightly-report", self.lock_backend, self.lock_ttl, clock_kw)
        self.reports = FencedStore("orders-reports", backend=self.lock_backend)

    def close(self) -> None:
        """Release the backends' clients (a shared in-memory backend stays usable)."""
        if self.backend is not self.shared_memory:
            self.backend.close()
        if self.lock_backend is not self.backend:
            self.lock_backend.close()

    # -- request handlers: (status, headers, body) --------------------------------------------

    def get_orders(self, client: str, customer: str) -> tuple[int, dict[str, str], Any]:
        decision = self.limiter.try_acquire(client)
        headers = {str(k): str(v) for k, v in dict(decision.headers()).items()}
        if not decision.allowed:
            return HTTPStatus.TOO_MANY_REQUESTS, headers, {"error": "slow down"}
        shard = self.ring.get_node(customer)
        try:
            stock = self.breaker.call(self.upstream.stock_for, customer)
        except CircuitOpenError as exc:
            headers["Retry-After"] = str(max(1, round(exc.retry_after)))
            return HTTPStatus.SERVICE_UNAVAILABLE, headers, {"error": "inventory unavailable"}
        except UpstreamDown:
            return HTTPStatus.BAD_GATEWAY, headers, {"error": "inventory failed"}
        return HTTPStatus.OK, headers, {"customer": customer, "shard": shard, "stock": stock}

    def run_report(
        self, replica: str, pause: Callable[[], None] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        try:
            lease = self.report_lock.acquire(timeout=2.0)
        except LockNotAcquired:
            return HTTPStatus.CONFLICT, {}, {"error": "another replica holds the report lock"}
        try:
            if pause is not None:
                pause()  # e.g. a GC pause or a slow query while holding the lock
            report = json.dumps({"by": replica, "token": lease.token})
            try:
                self.reports.write("latest", report, lease.token)
            except StaleTokenError:
                body = {"error": "stale fencing token", "token": lease.token}
                return HTTPStatus.CONFLICT, {}, body
            return HTTPStatus.OK, {}, {"token": lease.token, "report": json.loads(report)}
        finally:
            if not lease.lost:
                lease.release()


def _make_lock(name: str, backend: Any, ttl: float, clock_kw: dict[str, Any]) -> Any:
    if backend.kind == "zookeeper":
        return dsprims.ZooKeeperLock(name, backend=backend)
    # No auto-renewal: the report job must finish within its lease, or lose it visibly.
    if backend.kind == "redis":
        return dsprims.RedisLock(name, backend=backend, ttl=ttl, auto_renew=False)
    return dsprims.MemoryLock(name, backend=backend, ttl=ttl, auto_renew=False, **clock_kw)


def make_handler(service: OrderService) -> type[BaseHTTPRequestHandler]:
    """An HTTP request handler class bound to ``service``."""

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, headers: dict[str, str], body: Any) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("HLC", str(service.hlc.now()))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            parts = self.path.strip("/").split("/")
            if len(parts) == 2 and parts[0] == "orders":
                client = self.headers.get("X-Client-Id", self.client_address[0])
                self._reply(*service.get_orders(client, parts[1]))
            else:
                self._reply(HTTPStatus.NOT_FOUND, {}, {"error": "not found"})

        def do_POST(self) -> None:
            parts = self.path.strip("/").split("/")
            if parts == ["jobs", "report"]:
                self._reply(*service.run_report(self.headers.get("X-Replica", "replica-1")))
            elif len(parts) == 2 and parts[0] == "upstream" and parts[1] in ("up", "down"):
                service.upstream.healthy = parts[1] == "up"
                self._reply(HTTPStatus.OK, {}, {"upstream": parts[1]})
            else:
                self._reply(HTTPStatus.NOT_FOUND, {}, {"error": "not found"})

        def log_message(self, format: str, *args: Any) -> None:  # stdlib signature
            pass  # keep test output quiet; a real service would log through `logging`

    return Handler


def serve(service: OrderService, host: str = "127.0.0.1", port: int = 8080) -> ThreadingHTTPServer:
    """Start the HTTP server in a background thread and return it (``shutdown()`` stops it)."""
    server = ThreadingHTTPServer((host, port), make_handler(service))
    threading.Thread(target=server.serve_forever, name="order-service", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    """Run the service until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--backend", default="memory://", help="memory://, redis://host:port/0, …")
    parser.add_argument("--zookeeper", default=None, help="zookeeper://host:port for the job lock")
    args = parser.parse_args(argv)
    service = OrderService(backend_url=args.backend, zookeeper_url=args.zookeeper)
    server = serve(service, port=args.port)
    print(f"order service on http://127.0.0.1:{server.server_address[1]} ({args.backend})")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        service.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
