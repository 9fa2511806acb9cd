"""Real Redis and ZooKeeper servers for tests, on free loopback ports in temporary folders.

Each server is a child process this module started, so tests may kill it (SIGKILL), freeze it
(SIGSTOP) and thaw it (SIGCONT), or restart it on the same port. Readiness is polled (``PING``,
``ruok``), never waited out with a fixed sleep. Servers never use the default ports (6379, 2181)
and never touch a server this module did not start.

Binaries: ``redis-server`` and ``redis-cli`` on ``PATH`` (Debian package ``redis-server``);
ZooKeeper as Debian's ``zookeeper`` package lays it out (``/usr/share/java/zookeeper.jar`` and
``/etc/zookeeper/conf``) plus ``java``. :func:`missing_binaries` tells what is absent.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "RedisClusterProcess",
    "RedisServerProcess",
    "ServerStartError",
    "ZooKeeperEnsembleProcess",
    "ZooKeeperServerProcess",
    "free_port",
    "missing_binaries",
]

ZOOKEEPER_JAR = os.environ.get("DSPRIMS_ZOOKEEPER_JAR", "/usr/share/java/zookeeper.jar")
ZOOKEEPER_CONF_DIR = os.environ.get("DSPRIMS_ZOOKEEPER_CONF", "/etc/zookeeper/conf")
_DEFAULT_PORTS = frozenset({6379, 2181, 16379, 2888, 3888, 8080})
_START_TIMEOUT = 30.0


class ServerStartError(RuntimeError):
    """A test server did not become ready; the message carries the tail of its log."""


def missing_binaries(kind: str) -> list[str]:
    """What is missing to run ``kind`` (``"redis"`` or ``"zookeeper"``) servers here."""
    if kind == "redis":
        return [b for b in ("redis-server", "redis-cli") if shutil.which(b) is None]
    if kind == "zookeeper":
        missing = [] if shutil.which("java") else ["java"]
        if not Path(ZOOKEEPER_JAR).exists():
            missing.append(ZOOKEEPER_JAR)
        return missing
    raise ValueError(f"kind must be 'redis' or 'zookeeper', got {kind!r}")


_ISSUED: set[int] = set()


def free_port(*, also_free: tuple[int, ...] = ()) -> int:
    """A loopback TCP port that is free now (and ``port + offset`` for each offset given).

    Ports are drawn by the kernel (bind to port 0) below 55535 so that the Redis Cluster bus
    port (+10000) stays valid, and never repeat within this process.
    """
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        candidates = [port, *(port + off for off in also_free)]
        if port > 55535 or port in _ISSUED or any(p in _DEFAULT_PORTS for p in candidates):
            continue
        if all(_port_is_free(p) for p in candidates[1:]):
            _ISSUED.add(port)
            return port
    raise ServerStartError("could not find a free loopback port")


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _send(port: int, payload: bytes, timeout: float = 0.5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        chunks = []
        while True:
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if payload.startswith(b"*") and chunk.endswith(b"\r\n"):
                break  # a RESP reply is complete; Redis keeps the socket open
        return b"".join(chunks)


@dataclass
class _Process:
    """A child server process with kill/freeze/thaw/restart controls."""

    name: str
    workdir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    frozen: bool = False

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def _command(self) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError

    def _ready(self) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def _prepare(self) -> None:
        """Write configuration before (re)start."""

    def start(self, timeout: float = _START_TIMEOUT) -> None:
        """Start the process and poll until it answers; raise :class:`ServerStartError`."""
        if self.running:
            return
        self._prepare()
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                self._command(),
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C to pytest must not reach the server first
            )
        finally:
            log.close()
        self.frozen = False
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = _START_TIMEOUT) -> None:
        """Poll readiness every 20 ms until ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServerStartError(
                    f"{self.name} exited with {self.proc.returncode}:\n{_tail(self.log_path)}"
                )
            with contextlib.suppress(OSError):
                if self._ready():
                    return
            time.sleep(0.02)
        raise ServerStartError(f"{self.name} not ready after {timeout}s:\n{_tail(self.log_path)}")

    @property
    def running(self) -> bool:
        """Whether the process is alive (frozen counts as alive)."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the server (no shutdown, no persistence) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            if self.frozen:
                os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.frozen = False

    def freeze(self) -> None:
        """SIGSTOP the server: connections stay open but nothing answers."""
        if self.proc is not None and self.running and not self.frozen:
            os.kill(self.proc.pid, signal.SIGSTOP)
            self.frozen = True

    def thaw(self) -> None:
        """SIGCONT a frozen server."""
        if self.proc is not None and self.running and self.frozen:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.frozen = False

    @contextlib.contextmanager
    def frozen_for_a_while(self) -> Iterator[None]:
        """Context manager: frozen inside, thawed on exit (even on error)."""
        self.freeze()
        try:
            yield
        finally:
            self.thaw()

    def restart(self, timeout: float = _START_TIMEOUT) -> None:
        """Kill the server and start it again on the same port."""
        self.kill()
        self.start(timeout)

    def ensure_running(self) -> None:
        """Thaw or restart as needed so the next test starts with a healthy server."""
        if self.frozen:
            self.thaw()
        if not self.running:
            self.start()

    def stop(self) -> None:
        """Terminate the server gracefully (SIGTERM, then SIGKILL)."""
        if self.proc is None:
            return
        self.thaw()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@dataclass
class RedisServerProcess(_Process):
    """A ``redis-server`` on 127.0.0.1 that keeps nothing on disk (unless ``persistent``)."""

    extra_args: tuple[str, ...] = ()

    @classmethod
    def create(
        cls,
        workdir: Path | None = None,
        *,
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> RedisServerProcess:
        """Pick a folder and a port; call :meth:`start` next."""
        workdir = workdir or Path(tempfile.mkdtemp(prefix="dsprims-redis-"))
        workdir.mkdir(parents=True, exist_ok=True)
        return cls(
            name="redis",
            workdir=workdir,
            port=port or free_port(also_free=(10000,)),
            extra_args=extra_args,
        )

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def _command(self) -> list[str]:
        return [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.workdir), "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--protected-mode", "no", "--loglevel", "warning",
            *self.extra_args,
        ]  # fmt: skip

    def _ready(self) -> bool:
        return _send(self.port, b"*1\r\n$4\r\nPING\r\n").startswith(b"+PONG")

    def client(self, **kwargs: Any) -> Any:
        """A ``redis.Redis`` for this server with fail-fast defaults (1 s timeouts, no retry)."""
        import redis

        options: dict[str, Any] = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}
        options.update(kwargs)
        return redis.Redis(host="127.0.0.1", port=self.port, **options)


@dataclass
class RedisClusterProcess:
    """Three cluster-enabled ``redis-server`` masters joined with ``redis-cli --cluster create``."""

    nodes: list[RedisServerProcess]

    @classmethod
    def create(cls, workdir: Path | None = None, masters: int = 3) -> RedisClusterProcess:
        """Pick folders and ports; call :meth:`start` next."""
        workdir = workdir or Path(tempfile.mkdtemp(prefix="dsprims-redis-cluster-"))
        nodes = []
        for i in range(masters):
            nodes.append(
                RedisServerProcess.create(
                    workdir / f"node{i}",
                    extra_args=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                "--cluster-node-timeout", "2000"),
                )
            )  # fmt: skip
        return cls(nodes)

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,…``."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self, timeout: float = _START_TIMEOUT) -> None:
        """Start the masters, assign the slots, and wait until every node says ``state:ok``."""
        for node in self.nodes:
            node.start(timeout)
        if not self._state_ok():
            result = subprocess.run(
                ["redis-cli", "--cluster", "create",
                 *(f"127.0.0.1:{n.port}" for n in self.nodes),
                 "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True, timeout=60, check=False,
            )  # fmt: skip
            if result.returncode != 0:
                raise ServerStartError(
                    f"redis-cli --cluster create failed: {result.stdout!r} {result.stderr!r}"
                )
        self.wait_ready(timeout)

    def _state_ok(self) -> bool:
        try:
            return all(
                b"cluster_state:ok" in _send(n.port, b"*2\r\n$7\r\nCLUSTER\r\n$4\r\nINFO\r\n")
                for n in self.nodes
            )
        except OSError:
            return False

    def wait_ready(self, timeout: float = _START_TIMEOUT) -> None:
        """Poll ``CLUSTER INFO`` on every node until the cluster is ``ok``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._state_ok():
                return
            time.sleep(0.05)
        raise ServerStartError("Redis Cluster did not reach cluster_state:ok")

    def ensure_running(self) -> None:
        """Thaw or restart nodes (they keep nodes.conf, so slots survive) and wait for ``ok``."""
        for node in self.nodes:
            node.ensure_running()
        self.wait_ready()

    def client(self, **kwargs: Any) -> Any:
        """A ``redis.cluster.RedisCluster`` for this cluster with 1 s timeouts."""
        from redis.cluster import ClusterNode, RedisCluster

        options: dict[str, Any] = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}
        options.update(kwargs)
        return RedisCluster(
            startup_nodes=[ClusterNode("127.0.0.1", n.port) for n in self.nodes],  # type: ignore[no-untyped-call]
            **options,
        )

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()


def _zk_ruok(port: int) -> bool:
    return _send(port, b"ruok", timeout=1.0) == b"imok"


def _zk_serving(port: int) -> bool:
    # `ruok` answers before a quorum member can serve; `srvr` names the mode once it can.
    reply = _send(port, b"srvr", timeout=1.0)
    return b"Mode: " in reply


@dataclass
class ZooKeeperServerProcess(_Process):
    """A standalone ZooKeeper (``ZooKeeperServerMain``) with its own ``dataDir``.

    ``tick_time`` is short (200 ms) so that tests can use session timeouts down to 0.4 s.
    """

    tick_time_ms: int = 200
    quorum: list[tuple[int, int, int]] | None = None  # (client, peer, election) ports
    my_id: int = 0

    @classmethod
    def create(
        cls, workdir: Path | None = None, *, port: int | None = None
    ) -> ZooKeeperServerProcess:
        """Pick a folder and a port; call :meth:`start` next."""
        workdir = workdir or Path(tempfile.mkdtemp(prefix="dsprims-zk-"))
        workdir.mkdir(parents=True, exist_ok=True)
        return cls(name="zookeeper", workdir=workdir, port=port or free_port())

    @property
    def hosts(self) -> str:
        """``127.0.0.1:<port>``, the kazoo ``hosts`` string."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``zookeeper://127.0.0.1:<port>``."""
        return f"zookeeper://{self.hosts}"

    def _prepare(self) -> None:
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        lines = [
            f"tickTime={self.tick_time_ms}",
            f"dataDir={data}",
            f"clientPort={self.port}",
            "clientPortAddress=127.0.0.1",
            "maxClientCnxns=0",
            "admin.enableServer=false",
            "4lw.commands.whitelist=*",
            "initLimit=50",
            "syncLimit=25",
            f"minSessionTimeout={2 * self.tick_time_ms}",
        ]
        if self.quorum:
            (data / "myid").write_text(f"{self.my_id}\n")
            for i, (_client, peer, election) in enumerate(self.quorum, start=1):
                lines.append(f"server.{i}=127.0.0.1:{peer}:{election}")
        (self.workdir / "zoo.cfg").write_text("\n".join(lines) + "\n")

    def _command(self) -> list[str]:
        main = (
            "org.apache.zookeeper.server.quorum.QuorumPeerMain"
            if self.quorum
            else "org.apache.zookeeper.server.ZooKeeperServerMain"
        )
        return [
            "java", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            f"-Dzookeeper.log.dir={self.workdir}", "-Dzookeeper.root.logger=WARN,CONSOLE",
            "-cp", f"{ZOOKEEPER_CONF_DIR}:{ZOOKEEPER_JAR}",
            main, str(self.workdir / "zoo.cfg"),
        ]  # fmt: skip

    def _ready(self) -> bool:
        if self.quorum:
            return _zk_serving(self.port)
        return _zk_ruok(self.port)

    def client(self, **kwargs: Any) -> Any:
        """A started ``KazooClient`` for this server (the caller stops it)."""
        from kazoo.client import KazooClient

        client = KazooClient(hosts=self.hosts, **kwargs)
        client.start(timeout=15)
        return client


@dataclass
class ZooKeeperEnsembleProcess:
    """Three ZooKeeper peers (``QuorumPeerMain`` with ``myid`` files) on loopback."""

    nodes: list[ZooKeeperServerProcess]

    @classmethod
    def create(cls, workdir: Path | None = None, size: int = 3) -> ZooKeeperEnsembleProcess:
        """Pick folders and ports; call :meth:`start` next."""
        workdir = workdir or Path(tempfile.mkdtemp(prefix="dsprims-zk-ensemble-"))
        ports = [(free_port(), free_port(), free_port()) for _ in range(size)]
        nodes = []
        for i, (client, _peer, _election) in enumerate(ports, start=1):
            node = ZooKeeperServerProcess.create(workdir / f"node{i}", port=client)
            node.name = f"zookeeper{i}"
            node.quorum = ports
            node.my_id = i
            nodes.append(node)
        return cls(nodes)

    @property
    def hosts(self) -> str:
        """The kazoo ``hosts`` string naming every peer."""
        return ",".join(n.hosts for n in self.nodes)

    @property
    def url(self) -> str:
        """``zookeeper://h1:p1,h2:p2,h3:p3``."""
        return f"zookeeper://{self.hosts}"

    def start(self, timeout: float = 60.0) -> None:
        """Start every peer without waiting, then wait until each one serves."""
        for node in self.nodes:
            if not node.running:
                node._prepare()
                log = node.log_path.open("ab")
                try:
                    node.proc = subprocess.Popen(
                        node._command(), cwd=node.workdir, stdout=log, stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL, start_new_session=True,
                    )  # fmt: skip
                finally:
                    log.close()
                node.frozen = False
        for node in self.nodes:
            node.wait_ready(timeout)

    def ensure_running(self) -> None:
        """Thaw or restart peers so that the whole ensemble serves."""
        for node in self.nodes:
            if node.frozen:
                node.thaw()
        self.start()

    def client(self, **kwargs: Any) -> Any:
        """A started ``KazooClient`` connected to the ensemble."""
        from kazoo.client import KazooClient

        client = KazooClient(hosts=self.hosts, **kwargs)
        client.start(timeout=20)
        return client

    def stop(self) -> None:
        """Stop every peer."""
        for node in self.nodes:
            node.stop()
