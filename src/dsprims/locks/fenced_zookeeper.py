"""The ZooKeeper side of :class:`~dsprims.FencedStore`: a versioned compare-and-set per key.

Algorithm: each key is one persistent znode holding ``<highest token>\\n<kind>\\n<value>``. A write
reads the znode (data and ``version``), applies the fencing rule
(:func:`~dsprims.locks.core.fence_decision`: a token lower than the stored one is stale, an equal
or higher one wins) and writes back with ``setData(version=...)``; ZooKeeper rejects the write
if anyone changed the znode in between (``BadVersion``), and the write starts over. A missing
znode is created with ``create`` (``NodeExists`` means someone else created it first: start
over). So a lower token can never overwrite a higher one, whatever the interleaving: every
accepted write is checked against the exact version it replaces (optimistic concurrency control,
Kung & Robinson 1981; the fencing rule is Kleppmann's, "How to do distributed locking", 2016).

Round trips: a writer remembers the version and token it last wrote per key, so a holder that
writes repeatedly sends one ``setData`` per write; a write after someone else's costs a
``getData`` more.

Layout: ``/<prefix>/fenced:<encoded namespace>/<encoded key>``. Encoded names never contain
``:``, so fence znodes never collide with lock znodes (``/<prefix>/<encoded lock name>``).

Failure modes: every request is bounded by the backend's timeout and raises
:class:`~dsprims.BackendUnavailable` when ZooKeeper does not answer in time; such a write may or
may not have been applied, and retrying it with the same token is safe (equal tokens are
accepted). Values written by other programs in another format raise
:class:`~dsprims.BackendError` on read and write.
"""

from __future__ import annotations

import threading
from typing import Any, Final

from dsprims.backends.base import DEFAULT_PREFIX, check_name, znode_name
from dsprims.backends.zookeeper import ZooKeeperBackend
from dsprims.errors import BackendError, ConfigurationError, StaleTokenError
from dsprims.locks.core import check_token, fence_decision

try:
    import kazoo.exceptions as kexc
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("the ZooKeeper fence needs kazoo: pip install 'dsprims[zookeeper]'") from exc

__all__ = ["ZooKeeperFence", "decode_record", "encode_record"]

#: Writes retried this many times when other writers keep changing the znode under us.
_MAX_ATTEMPTS: Final = 64
#: Keys whose last written version is remembered (the cache is cleared when it grows past this).
_CACHE_SIZE: Final = 4096


def encode_record(token: int, value: str | bytes) -> bytes:
    """The znode data for ``value`` written with ``token``."""
    if isinstance(value, str):
        return b"%d\ns\n" % token + value.encode("utf-8")
    return b"%d\nb\n" % token + bytes(value)


def decode_record(data: bytes) -> tuple[int, str | bytes]:
    """``(token, value)`` from znode data made by :func:`encode_record`.

    Raises:
        BackendError: the data is not a fence record.
    """
    try:
        raw_token, kind, payload = data.split(b"\n", 2)
        token = int(raw_token)
        if kind == b"s":
            return token, payload.decode("utf-8")
        if kind == b"b":
            return token, payload
    except (ValueError, UnicodeDecodeError):
        pass
    raise BackendError("a fence znode holds data that is not a dsprims fence record")


class ZooKeeperFence:
    """Fenced key-value storage on ZooKeeper (used by :class:`~dsprims.FencedStore`).

    Args:
        namespace: the store's name (non-empty ``str``; stays data).
        backend: a :class:`~dsprims.ZooKeeperBackend`.
        prefix: the top znode (default ``"dsprims"``).
    """

    def __init__(
        self, namespace: str, backend: ZooKeeperBackend, *, prefix: str = DEFAULT_PREFIX
    ) -> None:
        self.namespace = check_name(namespace, "namespace")
        if not isinstance(backend, ZooKeeperBackend):
            raise ConfigurationError(f"backend must be a ZooKeeperBackend, got {backend!r}")
        self._backend = backend
        head, _, tail = backend.path(prefix, namespace).rpartition("/")
        self._root = f"{head}/fenced:{tail}"
        self._lock = threading.Lock()
        #: key -> (znode version, token) of this writer's last accepted write.
        self._known: dict[str, tuple[int, int]] = {}

    def path(self, key: str) -> str:
        """The znode that holds ``key``."""
        return f"{self._root}/{znode_name(check_name(key, 'key'))}"

    def write(self, key: str, value: str | bytes, token: int) -> None:
        """Store ``value`` unless a higher token was accepted for ``key`` (see the module doc).

        Raises:
            StaleTokenError: ``token`` is lower than the highest token already accepted.
            BackendUnavailable: ZooKeeper did not answer in time (the write may have landed).
        """
        token = check_token(token)
        if not isinstance(value, str | bytes):
            raise TypeError(f"value must be str or bytes, got {type(value).__name__}")
        path = self.path(key)
        record = encode_record(token, value)
        request = self._backend.request
        with self._lock:
            known = self._known.get(key)
        for _ in range(_MAX_ATTEMPTS):
            if known is not None:
                version, highest = known
                if not fence_decision(highest, token).accepted:
                    raise _stale(key, token, highest)
                try:
                    stat = request(
                        "set",
                        path,
                        record,
                        version=version,
                        expected=(kexc.BadVersionError, kexc.NoNodeError),
                    )
                except (kexc.BadVersionError, kexc.NoNodeError):
                    known = None
                    continue
                self._remember(key, int(stat.version), token)
                return
            try:
                data, stat = request("get", path, expected=(kexc.NoNodeError,))
            except kexc.NoNodeError:
                try:
                    request(
                        "create",
                        path,
                        record,
                        acl=self._backend.acl,
                        makepath=True,
                        expected=(kexc.NodeExistsError,),
                    )
                except kexc.NodeExistsError:
                    continue
                self._remember(key, 0, token)
                return
            known = (int(stat.version), decode_record(data)[0])
        raise BackendError(f"fenced write of {key!r} kept losing races ({_MAX_ATTEMPTS} tries)")

    def read(self, key: str) -> str | bytes | None:
        """The value last accepted for ``key``, or ``None``."""
        try:
            data, _stat = self._backend.request("get", self.path(key), expected=(kexc.NoNodeError,))
        except kexc.NoNodeError:
            return None
        return decode_record(data)[1]

    def highest_token(self, key: str) -> int | None:
        """The highest token accepted for ``key``, or ``None`` if nothing was written."""
        try:
            data, _stat = self._backend.request("get", self.path(key), expected=(kexc.NoNodeError,))
        except kexc.NoNodeError:
            return None
        return decode_record(data)[0]

    def _remember(self, key: str, version: int, token: int) -> None:
        with self._lock:
            if len(self._known) >= _CACHE_SIZE:
                self._known.clear()
            self._known[key] = (version, token)

    def __repr__(self) -> str:
        return f"ZooKeeperFence({self.namespace!r}, root={self._root!r})"


def _stale(key: str, token: int, highest: Any) -> StaleTokenError:
    return StaleTokenError(
        f"token {token} for key {key!r} is stale: token {highest} was already accepted"
    )
