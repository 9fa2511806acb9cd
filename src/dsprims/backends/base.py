"""What every backend shares: key namespacing and argument checks.

Keys. Every Redis key dsprims writes has the shape ``<prefix>:{<name>}:<part>``: ``prefix`` is
the user's namespace (default ``"dsprims"``), ``name`` identifies one primitive instance or one
rate-limit key, and ``part`` is chosen by the library. The braces make ``name`` the Redis Cluster
hash tag, so all keys of one decision hash to one slot (no CROSSSLOT). User input never reaches
the key unescaped: ``%``, ``{`` and ``}`` in a name are percent-encoded, so a hostile name cannot
close the hash tag early, collide with another name, or step outside the prefix. ZooKeeper paths
are percent-encoded the same way (see :func:`znode_name`).
"""

from __future__ import annotations

import re
from typing import Final, Literal
from urllib.parse import quote

from dsprims.errors import ConfigurationError

__all__ = [
    "DEFAULT_PREFIX",
    "BackendKind",
    "check_name",
    "check_prefix",
    "escape_name",
    "namespaced_key",
    "znode_name",
]

DEFAULT_PREFIX: Final = "dsprims"

BackendKind = Literal["memory", "redis", "zookeeper"]

# A prefix is configuration, not data: keep it to characters that cannot form a hash tag or a
# path separator, so that escaping is only ever needed for names.
_PREFIX_RE: Final = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")


def check_prefix(prefix: object) -> str:
    """Validate a key prefix (``prefix=`` of every stateful primitive)."""
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
    if not _PREFIX_RE.fullmatch(prefix):
        raise ConfigurationError(
            f"prefix must be 1-128 characters from [A-Za-z0-9_.:-], got {prefix!r}"
        )
    return prefix


def check_name(name: object, param: str = "key") -> str:
    """Validate a user-supplied name or key: a non-empty ``str``.

    Args:
        name: the value to check.
        param: the parameter name to put in error messages.

    Raises:
        TypeError: ``name`` is not a ``str``.
        ConfigurationError: ``name`` is empty.
    """
    if not isinstance(name, str):
        raise TypeError(f"{param} must be a str, got {type(name).__name__}")
    if not name:
        raise ConfigurationError(f"{param} must not be empty")
    return name


def escape_name(name: str) -> str:
    """Percent-encode the characters that carry meaning in a hash-tagged key."""
    if "%" in name or "{" in name or "}" in name:
        return name.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
    return name


def namespaced_key(prefix: str, name: str, part: str) -> str:
    """The Redis key ``<prefix>:{<escaped name>}:<part>``.

    ``prefix`` must already be checked (:func:`check_prefix`) and ``part`` is library-chosen;
    ``name`` may be anything a user typed.
    """
    return f"{prefix}:{{{escape_name(name)}}}:{part}"


def znode_name(name: str) -> str:
    """Encode a user name as one ZooKeeper path component.

    ZooKeeper rejects control characters and some Unicode ranges in paths, ``/`` would add a
    level, and ``.``/``..`` are reserved; so the name is percent-encoded (UTF-8, only
    ``[A-Za-z0-9_.~-]`` kept), which is reversible, and the two dot names get ``%2E``.
    """
    encoded = quote(name, safe="", errors="surrogatepass")
    if encoded in (".", ".."):
        encoded = encoded.replace(".", "%2E")
    return encoded
