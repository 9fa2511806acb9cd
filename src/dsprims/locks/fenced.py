"""FencedStore: the resource side of fencing tokens.

A lock alone cannot stop a holder that was paused past its lease from writing after the next
holder did (Kleppmann, "How to do distributed locking", 2016). The fix is at the resource:
every write carries the writer's fencing token, and the resource rejects a token lower than the
highest it has already accepted for that key (:func:`~dsprims.locks.core.fence_decision`).
Equal tokens are accepted, so one holder may write several times under one lease.

Backends: memory (one backend transaction), Redis (one atomic script,
``lock_fence_write.lua``; values and the highest token live in one hash per key) and ZooKeeper
(a versioned compare-and-set in ``dsprims.locks.fenced_zookeeper``). Values are ``str`` or
``bytes`` and :meth:`FencedStore.read` returns the type that was written. Tokens are ints in
``[0, 2**63 - 1]`` and are compared exactly (as decimal strings inside the Redis script).

SQL databases need no library: keep a ``fence`` column next to the data and write with
``UPDATE t SET value = :value, fence = :token WHERE id = :id AND fence <= :token``; zero rows
updated means the token was stale. See ``docs/locks.md``.

Failure modes: a write that raises :class:`~dsprims.BackendUnavailable` may or may not have been
applied (the reply was lost); retrying it with the same token is safe, because equal tokens are
accepted and a newer holder's write is never overwritten. With ``decode_responses=True`` on the
Redis client, ``bytes`` values must be valid UTF-8 (redis-py decodes every reply).
"""

from __future__ import annotations

import asyncio
import importlib
from typing import Any, Protocol

from dsprims.backends.base import DEFAULT_PREFIX, check_name, check_prefix, namespaced_key
from dsprims.backends.url import resolve_async_backend, resolve_backend
from dsprims.errors import ConfigurationError, StaleTokenError
from dsprims.locks.core import FenceDecision, check_token, fence_decision

__all__ = ["AsyncFencedStore", "FenceImpl", "FencedStore", "FencedValue"]

FencedValue = str | bytes


class FenceImpl(Protocol):
    """What a backend-specific fence provides (the ZooKeeper one lives in its own module)."""

    def write(self, key: str, value: FencedValue, token: int) -> None:
        """Store ``value`` unless ``token`` is stale; raise ``StaleTokenError`` if it is."""
        ...

    def read(self, key: str) -> FencedValue | None:
        """The value last written, or ``None``."""
        ...


def _check_value(value: object) -> FencedValue:
    if not isinstance(value, str | bytes):
        raise TypeError(f"value must be str or bytes, got {type(value).__name__}")
    return value


def _stale(key: str, token: int, highest: object) -> StaleTokenError:
    return StaleTokenError(
        f"token {token} for key {key!r} is stale: token {highest} was already accepted"
    )


def _as_str(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _redis_key(prefix: str, namespace: str, key: str) -> str:
    # The hash tag is the key (spreading a namespace over the cluster); the namespace, in the
    # library part after the tag, cannot change which slot or which other key is addressed.
    return namespaced_key(prefix, key, f"fenced:{namespace}")


def _redis_args(value: FencedValue, token: int) -> list[str | bytes]:
    return [str(token), value, "s" if isinstance(value, str) else "b"]


def _redis_write_result(reply: Any, key: str, token: int) -> None:
    if int(reply[0]) != 1:
        raise _stale(key, token, _as_str(reply[1]))


def _redis_read_result(reply: Any) -> FencedValue | None:
    value, kind = reply
    if value is None:
        return None
    if _as_str(kind) == "s":
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


class _MemoryFence:
    def __init__(self, namespace: str, store: Any, prefix: str) -> None:
        self._store = store
        self._namespace = namespace
        self._prefix = prefix

    def write(self, key: str, value: FencedValue, token: int) -> None:
        def step(
            state: tuple[int, FencedValue] | None,
        ) -> tuple[FenceDecision, tuple[int, FencedValue] | None]:
            decision = fence_decision(None if state is None else state[0], token)
            return decision, (token, value) if decision.accepted else state

        decision = self._store.transact(_redis_key(self._prefix, self._namespace, key), step)
        if not decision.accepted:
            raise _stale(key, token, decision.highest)

    def read(self, key: str) -> FencedValue | None:
        state = self._store.get(_redis_key(self._prefix, self._namespace, key))
        return None if state is None else state[1]


class _RedisFence:
    def __init__(self, namespace: str, backend: Any, prefix: str) -> None:
        self._backend = backend
        self._namespace = namespace
        self._prefix = prefix

    def write(self, key: str, value: FencedValue, token: int) -> None:
        rkey = _redis_key(self._prefix, self._namespace, key)
        reply = self._backend.evalsha("lock_fence_write", [rkey], _redis_args(value, token))
        _redis_write_result(reply, key, token)

    def read(self, key: str) -> FencedValue | None:
        rkey = _redis_key(self._prefix, self._namespace, key)
        return _redis_read_result(self._backend.call(self._backend.client.hmget, rkey, "v", "k"))


class _AsyncRedisFence:
    def __init__(self, namespace: str, backend: Any, prefix: str) -> None:
        self._backend = backend
        self._namespace = namespace
        self._prefix = prefix

    async def write(self, key: str, value: FencedValue, token: int) -> None:
        rkey = _redis_key(self._prefix, self._namespace, key)
        reply = await self._backend.evalsha("lock_fence_write", [rkey], _redis_args(value, token))
        _redis_write_result(reply, key, token)

    async def read(self, key: str) -> FencedValue | None:
        rkey = _redis_key(self._prefix, self._namespace, key)
        reply = await self._backend.call(self._backend.client.hmget, rkey, "v", "k")
        return _redis_read_result(reply)


def _zookeeper_fence(namespace: str, backend: Any, prefix: str) -> FenceImpl:
    try:
        module = importlib.import_module("dsprims.locks.fenced_zookeeper")
    except ModuleNotFoundError as exc:
        if exc.name != "dsprims.locks.fenced_zookeeper":
            raise
        raise ConfigurationError("FencedStore on ZooKeeper is not available") from None
    return module.ZooKeeperFence(namespace, backend, prefix=prefix)  # type: ignore[no-any-return]


def _memory_store(backend: Any) -> Any:
    # An AsyncMemoryBackend wraps a MemoryBackend: fence on the shared store directly.
    return getattr(backend, "store", backend)


class FencedStore:
    """A key-value store that rejects writes carrying stale fencing tokens.

    Args:
        namespace: the store's name (any non-empty string; stays data).
        backend: a memory, Redis or ZooKeeper backend, or a URL (default: a new in-memory
            backend). A backend made here from a URL belongs to the store: :meth:`close` (or
            ``with FencedStore(...) as store:``) closes it; a passed-in backend is never closed.
        prefix: the key namespace on Redis (default ``"dsprims"``).

    Example:
        >>> store = FencedStore("accounts")
        >>> store.write("alice", "100", token=7)
        >>> store.read("alice")
        '100'
    """

    def __init__(
        self, namespace: str, *, backend: object = None, prefix: str = DEFAULT_PREFIX
    ) -> None:
        self.namespace = check_name(namespace, "namespace")
        prefix = check_prefix(prefix)
        self.backend = resolve_backend(backend)
        #: Whether the backend was made here from a URL (then :meth:`close` closes it).
        self.owns_backend = isinstance(backend, str)
        self._closed = False
        kind = self.backend.kind
        self._impl: FenceImpl
        try:
            if kind == "memory":
                self._impl = _MemoryFence(self.namespace, _memory_store(self.backend), prefix)
            elif kind == "redis":
                self._impl = _RedisFence(self.namespace, self.backend, prefix)
            else:
                self._impl = _zookeeper_fence(self.namespace, self.backend, prefix)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the backend if this store made it from a URL (idempotent; else a no-op)."""
        if self.owns_backend and not self._closed:
            self._closed = True
            self.backend.close()

    def __enter__(self) -> FencedStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def write(self, key: str, value: FencedValue, token: int) -> None:
        """Store ``value`` under ``key`` unless a higher token was already accepted.

        Args:
            key: the item (non-empty ``str``).
            value: ``str`` or ``bytes``; :meth:`read` returns the same type.
            token: the writer's fencing token (``lease.token``).

        Raises:
            StaleTokenError: ``token`` is lower than the highest token accepted for ``key``.
            BackendUnavailable: the store could not be reached (the write may have landed;
                retrying with the same token is safe).
        """
        self._impl.write(check_name(key, "key"), _check_value(value), check_token(token))

    def read(self, key: str) -> FencedValue | None:
        """The value last accepted for ``key``, or ``None``."""
        return self._impl.read(check_name(key, "key"))

    def __repr__(self) -> str:
        return f"FencedStore({self.namespace!r}, backend={self.backend!r})"


class _ThreadedFence:
    """Runs a blocking fence (ZooKeeper) in a worker thread for the asyncio store."""

    def __init__(self, impl: FenceImpl) -> None:
        self._impl = impl

    async def write(self, key: str, value: FencedValue, token: int) -> None:
        await asyncio.to_thread(self._impl.write, key, value, token)

    async def read(self, key: str) -> FencedValue | None:
        return await asyncio.to_thread(self._impl.read, key)


class _AsyncMemoryFence:
    def __init__(self, impl: _MemoryFence) -> None:
        self._impl = impl

    async def write(self, key: str, value: FencedValue, token: int) -> None:
        self._impl.write(key, value, token)

    async def read(self, key: str) -> FencedValue | None:
        return self._impl.read(key)


class AsyncFencedStore:
    """The asyncio twin of :class:`FencedStore` (same keys, same script)."""

    def __init__(
        self, namespace: str, *, backend: object = None, prefix: str = DEFAULT_PREFIX
    ) -> None:
        self.namespace = check_name(namespace, "namespace")
        prefix = check_prefix(prefix)
        self.backend = resolve_async_backend(backend)
        #: Whether the backend was made here from a URL (then :meth:`aclose` closes it).
        self.owns_backend = isinstance(backend, str)
        self._closed = False
        kind = self.backend.kind
        self._impl: _AsyncRedisFence | _ThreadedFence | _AsyncMemoryFence
        if kind == "memory":
            store = _memory_store(self.backend)
            self._impl = _AsyncMemoryFence(_MemoryFence(self.namespace, store, prefix))
        elif kind == "redis":
            self._impl = _AsyncRedisFence(self.namespace, self.backend, prefix)
        else:
            self._impl = _ThreadedFence(_zookeeper_fence(self.namespace, self.backend, prefix))

    async def aclose(self) -> None:
        """Close the backend if this store made it from a URL (idempotent; else a no-op)."""
        if not self.owns_backend or self._closed:
            return
        self._closed = True
        closer = getattr(self.backend, "aclose", None)
        if closer is not None:
            await closer()
        elif hasattr(self.backend, "close"):  # a ZooKeeper backend: stopping kazoo blocks
            await asyncio.to_thread(self.backend.close)

    async def __aenter__(self) -> AsyncFencedStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def write(self, key: str, value: FencedValue, token: int) -> None:
        """See :meth:`FencedStore.write`."""
        await self._impl.write(check_name(key, "key"), _check_value(value), check_token(token))

    async def read(self, key: str) -> FencedValue | None:
        """See :meth:`FencedStore.read`."""
        return await self._impl.read(check_name(key, "key"))

    def __repr__(self) -> str:
        return f"AsyncFencedStore({self.namespace!r}, backend={self.backend!r})"
