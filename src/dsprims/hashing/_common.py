"""Shared conventions of the hashing algorithms: key hashing, node names, weights.

Every algorithm in :mod:`dsprims.hashing` hashes a key the same way: a ``str`` key is hashed as its
UTF-8 bytes, a ``bytes`` key as is, and anything else raises ``TypeError``. The 32-bit key hash is
MurmurHash3 x86_32 with seed 0, read as an unsigned integer (``mmh3.hash(key, 0, signed=False)``),
so the same key lands on the same node in every process, on every platform and in every Python
version (the built-in ``hash()`` is salted per process and is never used).

A ``str`` holding a lone surrogate (``"\\ud800"``) cannot be encoded as UTF-8 and raises
``UnicodeEncodeError`` (a ``ValueError``). It is checked before any C hash function sees it:
mmh3 5.3 crashes the interpreter when handed such a string.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Final

import mmh3

from dsprims.errors import ConfigurationError, DsprimsError

__all__ = [
    "HASH_SPACE",
    "EmptyRingError",
    "check_node",
    "check_weight",
    "key_bytes",
    "key_hash32",
    "parse_names",
    "parse_nodes",
]

#: Size of the 32-bit key-hash space: hashes are integers in ``[0, HASH_SPACE)``.
HASH_SPACE: Final = 1 << 32

_mmh3_32 = mmh3.hash


class EmptyRingError(DsprimsError, LookupError):
    """A lookup on a ring, table or balancer that has no nodes.

    It is a :class:`~dsprims.errors.DsprimsError` and also a ``LookupError``, so code that already
    catches ``LookupError`` (or ``KeyError``-style misses) handles it.
    """


def key_bytes(key: object) -> bytes:
    """The bytes a key is hashed as: UTF-8 for ``str``, the bytes themselves for ``bytes``.

    Raises:
        TypeError: the key is neither ``str`` nor ``bytes``.
        UnicodeEncodeError: the ``str`` holds a lone surrogate.
    """
    if isinstance(key, str):
        return key.encode()
    if isinstance(key, bytes):
        return key
    raise TypeError(f"key must be str or bytes, not {type(key).__name__}")


def key_hash32(key: object) -> int:
    """The 32-bit unsigned MurmurHash3 (seed 0) of a key's bytes.

    Raises:
        TypeError: the key is neither ``str`` nor ``bytes``.
        UnicodeEncodeError: the ``str`` holds a lone surrogate.
    """
    if isinstance(key, str):
        if key.isascii():
            return _mmh3_32(key, 0, False)
        return _mmh3_32(key.encode(), 0, False)
    if isinstance(key, bytes):
        return _mmh3_32(key, 0, False)
    raise TypeError(f"key must be str or bytes, not {type(key).__name__}")


def check_node(name: object) -> str:
    """Validate a node name (a non-empty ``str`` that encodes as UTF-8)."""
    if not isinstance(name, str):
        raise TypeError(f"node name must be str, not {type(name).__name__}")
    if not name:
        raise ConfigurationError("node name must not be empty")
    try:
        name.encode()
    except UnicodeEncodeError as exc:
        raise ConfigurationError(f"node name {name!r} is not valid UTF-8 text") from exc
    return name


def check_weight(weight: object, *, name: str = "weight") -> float:
    """Validate a node weight: a finite number greater than zero."""
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise TypeError(f"{name} must be a number, not {type(weight).__name__}")
    value = float(weight)
    if math.isnan(value) or value <= 0 or math.isinf(value):
        raise ConfigurationError(f"{name} must be a finite number > 0, got {weight!r}")
    return value


def parse_names(nodes: Iterable[str]) -> tuple[str, ...]:
    """Validate an iterable of distinct node names, keeping their order.

    Raises:
        TypeError: a name is not a ``str``, or ``nodes`` is a bare ``str`` (iterating it would
            make one node per character).
        ConfigurationError: an empty or duplicate name.
    """
    if isinstance(nodes, str | bytes):
        raise TypeError("nodes must be an iterable of names, not a single string")
    seen: dict[str, None] = {}
    for node in nodes:
        if check_node(node) in seen:
            raise ConfigurationError(f"node {node!r} is listed twice")
        seen[node] = None
    return tuple(seen)


def parse_nodes(nodes: Iterable[str] | Mapping[str, float]) -> dict[str, float]:
    """Normalise ``nodes`` (names, or a mapping name -> weight) to a dict name -> weight.

    Raises:
        TypeError: a name is not a ``str`` or a weight is not a number (a bare ``str`` is rejected
            too, since iterating it would make one node per character).
        ConfigurationError: an empty name, a duplicate name, or a weight <= 0, NaN or infinite.
    """
    if isinstance(nodes, str | bytes):
        raise TypeError("nodes must be an iterable of names or a mapping, not a single string")
    if isinstance(nodes, Mapping):
        out: dict[str, float] = {}
        for node, weight in nodes.items():
            out[check_node(node)] = check_weight(weight, name=f"weight of node {node!r}")
        return out
    return dict.fromkeys(parse_names(nodes), 1.0)
