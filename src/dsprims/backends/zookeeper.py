"""The ZooKeeper backend (kazoo), for a standalone server or an ensemble.

Primitives keep their znodes under ``/<prefix>/<encoded name>/…`` (see
:func:`~dsprims.backends.base.znode_name`); a chroot in the connection string moves the whole
tree. Optional digest ACLs make those znodes readable and writable only by the configured
identity.

Failure modes: kazoo's synchronous methods wait without a bound while the client reconnects, so
every request here goes through the ``*_async`` API and waits at most ``timeout`` seconds
(:meth:`ZooKeeperBackend.request`, :meth:`ZooKeeperBackend.wait`). A request issued while the
session is not CONNECTED fails at once. A lost connection (``ConnectionLoss``), an ended session
(``SessionExpiredError``) and a request without an answer in time all raise
:class:`~dsprims.BackendUnavailable`; any other kazoo error raises :class:`~dsprims.BackendError`,
chained. A request that timed out may still be applied by the server later: primitives that create
nodes must be ready to find and remove them. Control-flow errors a primitive expects
(``NoNodeError``, ``NodeExistsError``, ``BadVersionError``) should be caught by passing
``expected=`` to :meth:`ZooKeeperBackend.request`. Session state changes (SUSPENDED, LOST) reach
primitives through :meth:`add_listener`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

from dsprims.backends.base import BackendKind, check_prefix, znode_name
from dsprims.errors import BackendError, BackendUnavailable, ConfigurationError, DsprimsError

try:
    import kazoo.exceptions as kexc
    from kazoo.client import KazooClient, KazooState
    from kazoo.handlers.threading import KazooTimeoutError
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the ZooKeeper backend needs kazoo: pip install 'dsprims[zookeeper]'"
    ) from exc

__all__ = ["ZooKeeperBackend", "translate_zookeeper_error"]

T = TypeVar("T")

_UNAVAILABLE = (
    kexc.ConnectionLoss,
    kexc.ConnectionClosedError,
    kexc.SessionExpiredError,
    kexc.SessionMovedError,
    kexc.OperationTimeoutError,
    # The server's request timeout has its own class from kazoo 2.11 on (a bare ZookeeperError
    # before, which stays a BackendError).
    *((kexc.RequestTimeoutError,) if hasattr(kexc, "RequestTimeoutError") else ()),
    kexc.ZookeeperStoppedError,
    KazooTimeoutError,
    OSError,
)


def translate_zookeeper_error(exc: BaseException) -> DsprimsError:
    """The dsprims error for a kazoo exception (the caller chains it with ``from``)."""
    if isinstance(exc, DsprimsError):
        return exc
    if isinstance(exc, _UNAVAILABLE):
        return BackendUnavailable(f"ZooKeeper is unavailable: {type(exc).__name__}: {exc}")
    if isinstance(exc, kexc.NoAuthError | kexc.AuthFailedError):
        return BackendError(f"ZooKeeper refused access: {type(exc).__name__}")
    return BackendError(f"ZooKeeper error: {type(exc).__name__}: {exc}")


class ZooKeeperBackend:
    """Shared state on ZooKeeper through a started ``kazoo.client.KazooClient``.

    Args:
        client: a started kazoo client (chroot, auth and timeouts are its own settings).
        acl: ACLs for the znodes dsprims creates (e.g. from ``kazoo.security.make_digest_acl``);
            ``None`` uses the client's default ACL.
        timeout: seconds a request may wait for its answer before ``BackendUnavailable``.
        owns_client: stop and close the client in :meth:`close` (set by ``backend_from_url``).
    """

    kind: ClassVar[BackendKind] = "zookeeper"

    def __init__(
        self,
        client: KazooClient,
        *,
        acl: Sequence[Any] | None = None,
        timeout: float = 5.0,
        owns_client: bool = False,
    ) -> None:
        if not isinstance(client, KazooClient):
            raise TypeError(f"client must be a kazoo KazooClient, got {type(client).__name__}")
        if not timeout > 0:
            raise ConfigurationError(f"timeout must be > 0, got {timeout!r}")
        self.client = client
        self.acl = list(acl) if acl is not None else None
        self.timeout = float(timeout)
        self._owns_client = owns_client

    def path(self, prefix: str, name: str, *parts: str) -> str:
        """The znode path ``/<prefix>/<encoded name>[/<part>…]`` for a user-supplied name."""
        check_prefix(prefix)
        if prefix in (".", ".."):
            raise BackendError(f"prefix {prefix!r} is not a valid znode name")
        tail = "".join(f"/{part}" for part in parts)
        return f"/{prefix.replace('/', '_')}/{znode_name(name)}{tail}"

    def check_connected(self) -> None:
        """Raise ``BackendUnavailable`` unless the session is CONNECTED right now."""
        state = self.client.state
        if state != KazooState.CONNECTED:
            raise BackendUnavailable(f"ZooKeeper session is {state}")

    def wait(
        self,
        async_result: Any,
        *,
        timeout: float | None = None,
        expected: tuple[type[BaseException], ...] = (),
    ) -> Any:
        """Wait for a kazoo ``IAsyncResult`` at most ``timeout`` (default ``self.timeout``).

        Exceptions listed in ``expected`` propagate unchanged; others are translated.
        """
        try:
            return async_result.get(timeout=self.timeout if timeout is None else timeout)
        except expected:
            raise
        except (kexc.KazooException, KazooTimeoutError, OSError) as exc:
            raise translate_zookeeper_error(exc) from exc

    def request(
        self,
        method: str,
        *args: Any,
        expected: tuple[type[BaseException], ...] = (),
        **kwargs: Any,
    ) -> Any:
        """Call ``client.<method>_async(*args, **kwargs)`` and wait for it, bounded.

        Example: ``backend.request("create", path, b"", ephemeral=True, sequence=True)``.
        """
        self.check_connected()
        try:
            result = getattr(self.client, f"{method}_async")(*args, **kwargs)
        except expected:
            raise
        except (kexc.KazooException, KazooTimeoutError, OSError) as exc:
            raise translate_zookeeper_error(exc) from exc
        return self.wait(result, expected=expected)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a synchronous kazoo call with errors translated; fails fast when disconnected.

        Prefer :meth:`request`: a synchronous kazoo call that is already waiting is not bounded
        by ``timeout``.
        """
        self.check_connected()
        try:
            return fn(*args, **kwargs)
        except (kexc.KazooException, KazooTimeoutError, OSError) as exc:
            raise translate_zookeeper_error(exc) from exc

    def add_listener(self, listener: Callable[[Any], Any]) -> None:
        """Register ``listener(state)`` for kazoo session states (CONNECTED, SUSPENDED, LOST)."""
        self.client.add_listener(listener)

    def remove_listener(self, listener: Callable[[Any], Any]) -> None:
        """Undo :meth:`add_listener`."""
        self.client.remove_listener(listener)

    def ping(self) -> bool:
        """Round-trip check (``sync`` of the root); raises ``BackendUnavailable`` when down."""
        self.request("sync", "/")
        return True

    def close(self) -> None:
        """Stop and close the client if this backend created it."""
        if self._owns_client:
            self.client.stop()
            self.client.close()

    def __enter__(self) -> ZooKeeperBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ZooKeeperBackend({self.client.hosts!r})"
