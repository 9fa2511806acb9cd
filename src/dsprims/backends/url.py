"""Choosing a backend by URL, and resolving the ``backend=`` argument of primitives.

=================================================  ==========================================
URL                                                backend
=================================================  ==========================================
``memory://``                                      :class:`MemoryBackend`
``redis://[user:pass@]host:port/db``               :class:`RedisBackend` (standalone)
``rediss://…``                                     the same over TLS (redis-py's own options)
``redis+cluster://host:port[,host:port…]``         :class:`RedisBackend` on a Redis Cluster
``rediss+cluster://…``                             the same over TLS
``zookeeper://host:port[,host:port…][/chroot]``    :class:`ZooKeeperBackend`
=================================================  ==========================================

Query parameters: ``timeout`` (seconds, default 1.0) bounds how long a dead or frozen server can
hold a call before :class:`~dsprims.BackendUnavailable`; for ZooKeeper ``session_timeout``
(seconds, default 10) and ``digest=user:password`` (auth plus a creator-only ACL). Other query
parameters of ``redis://`` URLs go to redis-py unchanged.
"""

from __future__ import annotations

import math
import sys
import warnings
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from dsprims.backends.memory import AsyncMemoryBackend, MemoryBackend
from dsprims.errors import ConfigurationError

__all__ = [
    "async_backend_from_url",
    "backend_from_url",
    "resolve_async_backend",
    "resolve_backend",
]

DEFAULT_TIMEOUT = 1.0


def _timeout(query: dict[str, list[str]], name: str, default: float) -> float:
    raw = query.pop(name, None)
    if raw is None:
        return default
    try:
        value = float(raw[-1])
    except ValueError:
        raise ConfigurationError(f"{name} in the URL must be a number, got {raw[-1]!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{name} in the URL must be > 0, got {raw[-1]!r}")
    return value


def _split(url: object) -> tuple[str, Any, dict[str, list[str]]]:
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, got {type(url).__name__}")
    parts = urlsplit(url)
    if not parts.scheme:
        raise ConfigurationError(
            f"url must start with a scheme such as memory:// or redis://: {url!r}"
        )
    return parts.scheme.lower(), parts, parse_qs(parts.query, keep_blank_values=True)


def _cluster_nodes(parts: Any) -> list[tuple[str, int]]:
    nodes = []
    for hostport in parts.netloc.rsplit("@", 1)[-1].split(","):
        host, _, port = hostport.rpartition(":")
        if not host:
            host, port = port, "6379"
        try:
            nodes.append((host.strip("[]"), int(port)))
        except ValueError:
            raise ConfigurationError(f"bad host:port {hostport!r} in the cluster URL") from None
    return nodes


def _redis_client_kwargs(timeout: float) -> dict[str, Any]:
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.retry import Retry

    # One immediate retry on a dropped connection lets the first call after a server restart
    # succeed on a fresh socket; timeouts are never retried, so a frozen server costs at most
    # `timeout`, and a retried script cannot land twice after a lost reply.
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        "health_check_interval": 0,
    }


def backend_from_url(url: str, *, timeout: float | None = None) -> Any:
    """Create a backend (and its client) from a URL; see the module docstring for schemes.

    Args:
        url: ``memory://``, ``redis://…``, ``rediss://…``, ``redis+cluster://…`` or
            ``zookeeper://…``.
        timeout: seconds a dead or frozen server may hold a call; overrides ``?timeout=``.

    Returns:
        A :class:`MemoryBackend`, :class:`RedisBackend` or :class:`ZooKeeperBackend`, which
        closes the client it created in ``close()``.
    """
    scheme, parts, query = _split(url)
    limit = _timeout(query, "timeout", DEFAULT_TIMEOUT) if timeout is None else timeout
    if scheme == "memory":
        return MemoryBackend()
    if scheme in ("redis", "rediss", "unix"):
        import redis

        from dsprims.backends.redis import RedisBackend

        kwargs = _redis_client_kwargs(limit)
        clean = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
        return RedisBackend(redis.Redis.from_url(clean, **kwargs), owns_client=True)
    if scheme in ("redis+cluster", "rediss+cluster"):
        from redis.cluster import ClusterNode, RedisCluster

        from dsprims.backends.redis import RedisBackend

        kwargs = _redis_client_kwargs(limit)
        if parts.username or parts.password:
            kwargs.update(username=parts.username, password=parts.password)
        nodes = [ClusterNode(h, p) for h, p in _cluster_nodes(parts)]  # type: ignore[no-untyped-call]
        client = RedisCluster(startup_nodes=nodes, ssl=scheme.startswith("rediss"), **kwargs)
        return RedisBackend(client, owns_client=True)
    if scheme in ("zookeeper", "zk"):
        return _zookeeper_from_url(parts, query, limit)
    raise ConfigurationError(f"unsupported backend URL scheme {scheme!r} in {url!r}")


def _zookeeper_from_url(parts: Any, query: dict[str, list[str]], timeout: float) -> Any:
    from kazoo.client import KazooClient
    from kazoo.retry import KazooRetry
    from kazoo.security import make_digest_acl

    from dsprims.backends.zookeeper import ZooKeeperBackend, translate_zookeeper_error

    session_timeout = _timeout(query, "session_timeout", 10.0)
    hosts = parts.netloc + (parts.path if parts.path not in ("", "/") else "")
    auth_data = None
    acl = None
    digest = query.pop("digest", None)
    if digest:
        user, sep, password = digest[-1].partition(":")
        if not sep or not user:
            raise ConfigurationError("digest in the URL must be user:password")
        auth_data = [("digest", f"{user}:{password}")]
        acl = [make_digest_acl(user, password, all=True)]
    client = KazooClient(
        hosts=hosts,
        timeout=session_timeout,
        auth_data=auth_data,
        default_acl=acl,
        # Bounded retries: an outage surfaces as BackendUnavailable instead of a hang.
        command_retry=KazooRetry(max_tries=1, deadline=timeout, ignore_expire=False),
        connection_retry=KazooRetry(max_tries=-1, max_delay=timeout),
    )
    try:
        with warnings.catch_warnings():
            # kazoo warns when the chroot does not exist yet; it is created just below.
            warnings.filterwarnings("ignore", message="No chroot path exists")
            client.start(timeout=max(timeout, 5.0))
        if client.chroot:
            client.ensure_path("/")
    except Exception as exc:
        client.stop()
        client.close()
        raise translate_zookeeper_error(exc) from exc
    return ZooKeeperBackend(client, acl=acl, timeout=timeout, owns_client=True)


def async_backend_from_url(url: str, *, timeout: float | None = None) -> Any:
    """The asyncio twin of :func:`backend_from_url`: ``memory://`` and the Redis schemes."""
    scheme, parts, query = _split(url)
    limit = _timeout(query, "timeout", DEFAULT_TIMEOUT) if timeout is None else timeout
    if scheme == "memory":
        return AsyncMemoryBackend()
    if scheme in ("redis", "rediss", "unix"):
        import redis.asyncio

        from dsprims.backends.redis import AsyncRedisBackend

        kwargs = _async_redis_client_kwargs(limit)
        clean = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
        return AsyncRedisBackend(redis.asyncio.Redis.from_url(clean, **kwargs), owns_client=True)
    if scheme in ("redis+cluster", "rediss+cluster"):
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        from dsprims.backends.redis import AsyncRedisBackend

        kwargs = _async_redis_client_kwargs(limit)
        if parts.username or parts.password:
            kwargs.update(username=parts.username, password=parts.password)
        nodes = [ClusterNode(h, p) for h, p in _cluster_nodes(parts)]
        client = RedisCluster(startup_nodes=nodes, ssl=scheme.startswith("rediss"), **kwargs)
        return AsyncRedisBackend(client, owns_client=True)
    if scheme in ("zookeeper", "zk"):
        raise ConfigurationError(
            "kazoo has no asyncio driver: use backend_from_url for zookeeper:// "
            "(the async ZooKeeper primitives take the sync backend)"
        )
    raise ConfigurationError(f"unsupported backend URL scheme {scheme!r} in {url!r}")


def _async_redis_client_kwargs(timeout: float) -> dict[str, Any]:
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    }


def client_kind(client: object) -> str | None:
    """``"redis"``, ``"aredis"`` (redis.asyncio), ``"kazoo"``, or ``None`` for anything else.

    Only drivers already imported are asked: an object cannot be one of their clients otherwise
    (and redis-py and kazoo stay optional).
    """
    if "redis" in sys.modules:
        import redis
        import redis.asyncio
        import redis.cluster

        if isinstance(client, redis.Redis | redis.cluster.RedisCluster):
            return "redis"
        if isinstance(client, redis.asyncio.Redis | redis.asyncio.RedisCluster):
            return "aredis"
    kazoo_client = sys.modules.get("kazoo.client")
    if kazoo_client is not None and isinstance(client, kazoo_client.KazooClient):
        return "kazoo"
    return None


def _wrap_client(client: object, *, asyncio: bool) -> Any:
    """A backend around a driver's client (the caller's: the backend will not close it)."""
    kind = client_kind(client)
    if kind == ("aredis" if asyncio else "redis"):
        from dsprims.backends.redis import AsyncRedisBackend, RedisBackend

        return (AsyncRedisBackend if asyncio else RedisBackend)(client)  # type: ignore[arg-type]
    if kind == "kazoo":
        from dsprims.backends.zookeeper import ZooKeeperBackend

        return ZooKeeperBackend(client)
    if kind == "aredis":
        raise TypeError(
            "backend is a redis.asyncio client: use the primitive's Async twin, "
            "or pass a redis.Redis / redis.cluster.RedisCluster"
        )
    if kind == "redis":
        raise TypeError(
            "backend is a sync redis client: asyncio primitives need a redis.asyncio client"
        )
    raise TypeError(
        f"backend must be a backend object, a URL string or a redis-py / kazoo client, "
        f"got {type(client).__name__}"
    )


def resolve_backend(backend: object) -> Any:
    """Turn a primitive's ``backend=`` argument into a backend object.

    ``None`` gives a fresh :class:`MemoryBackend`; a string is passed to
    :func:`backend_from_url`; a ``redis.Redis`` or ``redis.cluster.RedisCluster`` is wrapped in
    a :class:`~dsprims.backends.redis.RedisBackend`, a started ``KazooClient`` in a
    :class:`~dsprims.backends.zookeeper.ZooKeeperBackend` (the client stays the caller's: closing
    the primitive leaves it open); a backend object is returned as it is.
    """
    if backend is None:
        return MemoryBackend()
    if isinstance(backend, str):
        return backend_from_url(backend)
    if getattr(backend, "kind", None) in ("memory", "redis", "zookeeper"):
        return backend
    return _wrap_client(backend, asyncio=False)


def resolve_async_backend(backend: object) -> Any:
    """The asyncio twin of :func:`resolve_backend`: it wraps a ``redis.asyncio.Redis`` or
    ``redis.asyncio.RedisCluster`` in an :class:`~dsprims.backends.redis.AsyncRedisBackend`
    (and a ``KazooClient`` in a ``ZooKeeperBackend``, which the asyncio ZooKeeper primitives
    take)."""
    if backend is None:
        return AsyncMemoryBackend()
    if isinstance(backend, str):
        return async_backend_from_url(backend)
    if isinstance(backend, MemoryBackend):
        return AsyncMemoryBackend(backend)
    if getattr(backend, "kind", None) in ("memory", "redis", "zookeeper"):
        return backend
    return _wrap_client(backend, asyncio=True)
