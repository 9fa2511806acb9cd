"""Backends: where primitives keep shared state.

Three implementations behind the same conventions: :class:`MemoryBackend` (in-process, the
default and the fake for tests), :class:`~dsprims.backends.redis.RedisBackend` (redis-py, Lua
scripts, one round trip per decision, Cluster-safe keys) and
:class:`~dsprims.backends.zookeeper.ZooKeeperBackend` (kazoo). The Redis and ZooKeeper modules
import their drivers lazily, so ``import dsprims`` works without either extra installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dsprims.backends.base import (
    DEFAULT_PREFIX,
    check_name,
    check_prefix,
    escape_name,
    namespaced_key,
    znode_name,
)
from dsprims.backends.memory import AsyncMemoryBackend, MemoryBackend
from dsprims.backends.url import (
    async_backend_from_url,
    backend_from_url,
    resolve_async_backend,
    resolve_backend,
)

if TYPE_CHECKING:
    from dsprims.backends.redis import AsyncRedisBackend, RedisBackend
    from dsprims.backends.zookeeper import ZooKeeperBackend

__all__ = [
    "DEFAULT_PREFIX",
    "AsyncMemoryBackend",
    "AsyncRedisBackend",
    "MemoryBackend",
    "RedisBackend",
    "ZooKeeperBackend",
    "async_backend_from_url",
    "backend_from_url",
    "check_name",
    "check_prefix",
    "escape_name",
    "namespaced_key",
    "resolve_async_backend",
    "resolve_backend",
    "znode_name",
]

_LAZY = {
    "RedisBackend": "dsprims.backends.redis",
    "AsyncRedisBackend": "dsprims.backends.redis",
    "ZooKeeperBackend": "dsprims.backends.zookeeper",
}


def __getattr__(name: str) -> Any:
    # The driver-backed classes load on first use, keeping redis/kazoo optional.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dsprims.backends' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
