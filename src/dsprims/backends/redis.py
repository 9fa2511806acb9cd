"""The Redis backend (redis-py), for a standalone server and for Redis Cluster.

Every decision a primitive makes on Redis is one EVALSHA of a script kept as package data
(``dsprims/backends/lua/*.lua``). The SHA is computed locally, so the first call needs no
``SCRIPT LOAD``; after a restart or ``SCRIPT FLUSH`` the server answers NOSCRIPT and the call is
repeated once as EVAL (which also caches the script again). Keys follow
:func:`~dsprims.backends.base.namespaced_key`, so the keys of one decision share a cluster slot.

Failure modes: driver exceptions are translated here and chained. A refused or reset connection
and a read that times out raise :class:`~dsprims.BackendUnavailable`; any other server error raises
:class:`~dsprims.BackendError`. How long a dead or frozen server takes to report depends on the
client's ``socket_timeout``/``socket_connect_timeout`` and retry policy: clients made by
:func:`~dsprims.backend_from_url` fail within ``timeout`` (one immediate retry on a dropped
connection, none on a timeout). A client you pass in keeps its own settings; redis-py's default
retries can hold a call for several seconds during an outage.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from dsprims.backends._lua import LuaScript, lua_script
from dsprims.backends.base import BackendKind
from dsprims.errors import BackendError, BackendUnavailable, DsprimsError

try:
    import redis
    import redis.asyncio
    import redis.cluster
    import redis.exceptions as rexc
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("the Redis backend needs redis-py: pip install 'dsprims[redis]'") from exc

if TYPE_CHECKING:
    from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

__all__ = ["AsyncRedisBackend", "RedisBackend", "translate_redis_error"]

T = TypeVar("T")
ScriptArg = str | bytes | int | float

_UNAVAILABLE = (
    rexc.ConnectionError,  # includes BusyLoadingError, and AuthenticationError in some versions
    rexc.TimeoutError,
    rexc.ClusterDownError,
    rexc.TryAgainError,
    rexc.MasterDownError,
    rexc.SlotNotCoveredError,
    OSError,
)


# Every exception redis-py raises on its own: RedisClusterException (client-side slot checks)
# does not derive from RedisError, and some socket failures surface as bare OSError.
_DRIVER_ERRORS = (rexc.RedisError, rexc.RedisClusterException, OSError)


def translate_redis_error(exc: BaseException) -> DsprimsError:
    """The dsprims error for a redis-py exception (the caller chains it with ``from``)."""
    if isinstance(exc, DsprimsError):
        return exc
    if isinstance(exc, rexc.AuthenticationError | rexc.AuthorizationError):
        return BackendError(f"Redis refused the credentials: {exc}")
    if isinstance(exc, _UNAVAILABLE):
        return BackendUnavailable(f"Redis is unavailable: {type(exc).__name__}: {exc}")
    return BackendError(f"Redis error: {type(exc).__name__}: {exc}")


def _is_cluster(client: object) -> bool:
    return isinstance(client, redis.cluster.RedisCluster) or type(client).__name__ == "RedisCluster"


class RedisBackend:
    """Shared state on Redis through a ``redis.Redis`` or ``redis.cluster.RedisCluster``.

    Args:
        client: a connected redis-py client. Its ``decode_responses`` setting is respected:
            primitives accept both ``bytes`` and ``str`` replies.
        owns_client: close the client in :meth:`close` (set by ``backend_from_url``).
    """

    kind: ClassVar[BackendKind] = "redis"

    def __init__(
        self, client: redis.Redis | redis.cluster.RedisCluster, *, owns_client: bool = False
    ) -> None:
        if not isinstance(client, redis.Redis | redis.cluster.RedisCluster):
            raise TypeError(
                f"client must be a redis.Redis or redis.cluster.RedisCluster, "
                f"got {type(client).__name__}"
            )
        self.client = client
        self.is_cluster = _is_cluster(client)
        self._owns_client = owns_client
        self._execute: Callable[..., Any] = client.execute_command

    def evalsha(
        self, script: str | LuaScript, keys: Sequence[str], args: Sequence[ScriptArg] = ()
    ) -> Any:
        """Run ``script`` atomically in one round trip and return its reply.

        Args:
            script: a script name (``dsprims/backends/lua/<name>.lua``) or a loaded script.
            keys: the keys the script touches (all in one slot on a cluster).
            args: ARGV values; user data goes here, never into script text.

        Raises:
            BackendUnavailable: the server is down, frozen or unreachable.
            BackendError: the server or the script reported an error.
        """
        if isinstance(script, str):
            script = lua_script(script)
        try:
            return self._execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except rexc.NoScriptError:
            try:
                return self._execute("EVAL", script.source, len(keys), *keys, *args)
            except _DRIVER_ERRORS as exc:
                raise translate_redis_error(exc) from exc
        except _DRIVER_ERRORS as exc:
            raise translate_redis_error(exc) from exc

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` (a client method) with errors translated."""
        try:
            return fn(*args, **kwargs)
        except _DRIVER_ERRORS as exc:
            raise translate_redis_error(exc) from exc

    def ping(self) -> bool:
        """Round-trip check; raises :class:`~dsprims.BackendUnavailable` when down."""
        return bool(self.call(self.client.ping))

    def close(self) -> None:
        """Close the client if this backend created it."""
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> RedisBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisBackend({'cluster' if self.is_cluster else 'standalone'})"


class AsyncRedisBackend:
    """The asyncio twin of :class:`RedisBackend`, over ``redis.asyncio``.

    Same scripts, same keys and same error translation; only the calls are awaited.
    """

    kind: ClassVar[BackendKind] = "redis"

    def __init__(
        self, client: redis.asyncio.Redis | AsyncRedisCluster, *, owns_client: bool = False
    ) -> None:
        from redis.asyncio.cluster import RedisCluster as _AsyncCluster

        if not isinstance(client, redis.asyncio.Redis | _AsyncCluster):
            raise TypeError(
                f"client must be a redis.asyncio.Redis or redis.asyncio.cluster.RedisCluster, "
                f"got {type(client).__name__}"
            )
        self.client = client
        self.is_cluster = isinstance(client, _AsyncCluster)
        self._owns_client = owns_client
        self._execute: Callable[..., Awaitable[Any]] = client.execute_command

    async def evalsha(
        self, script: str | LuaScript, keys: Sequence[str], args: Sequence[ScriptArg] = ()
    ) -> Any:
        """See :meth:`RedisBackend.evalsha`."""
        if isinstance(script, str):
            script = lua_script(script)
        try:
            return await self._execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except rexc.NoScriptError:
            try:
                return await self._execute("EVAL", script.source, len(keys), *keys, *args)
            except _DRIVER_ERRORS as exc:
                raise translate_redis_error(exc) from exc
        except _DRIVER_ERRORS as exc:
            raise translate_redis_error(exc) from exc

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Await ``fn(*args, **kwargs)`` (a client method) with errors translated."""
        try:
            return await fn(*args, **kwargs)
        except _DRIVER_ERRORS as exc:
            raise translate_redis_error(exc) from exc

    async def ping(self) -> bool:
        """Round-trip check; raises :class:`~dsprims.BackendUnavailable` when down."""
        return bool(await self.call(self.client.ping))

    async def aclose(self) -> None:
        """Close the client if this backend created it."""
        if self._owns_client:
            await self.client.aclose()

    async def __aenter__(self) -> AsyncRedisBackend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncRedisBackend({'cluster' if self.is_cluster else 'standalone'})"
