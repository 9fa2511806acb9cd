"""Jump consistent hash (Lamping & Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm",
Google, 2014, arXiv:1406.2294).

``jump_hash(key, buckets)`` maps a 64-bit key to a bucket in ``[0, buckets)`` with no memory and
a perfectly even spread: growing from ``n`` to ``n + 1`` buckets moves exactly the keys that land
in the new bucket (about ``1/(n+1)``). The arithmetic follows the paper's C++ (a 64-bit linear
congruential step and a double-precision division), so results match every faithful port.

Failure modes: buckets are numbers, not names; only the *last* bucket can be removed without
renumbering. :class:`JumpHash` names the buckets and removes a node from the middle by moving the
last node into its slot, which moves that node's keys too (about ``2/n`` of all keys instead of
``1/n``). Jump has no weights and no preference lists.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import mmh3

from dsprims.errors import ConfigurationError
from dsprims.hashing._common import EmptyRingError, check_node, key_bytes, parse_names

__all__ = ["JumpHash", "jump_hash", "key_hash64"]

_M64 = (1 << 64) - 1
_LCG = 2862933555777941757


def jump_hash(key: int, buckets: int) -> int:
    """The bucket in ``[0, buckets)`` for a 64-bit unsigned ``key`` (Lamping & Veach).

    Raises:
        TypeError: ``key`` or ``buckets`` is not an int.
        ValueError: ``key`` is outside ``[0, 2**64)`` or ``buckets < 1``.
    """
    if isinstance(key, bool) or not isinstance(key, int):
        raise TypeError(f"key must be an int, not {type(key).__name__}")
    if isinstance(buckets, bool) or not isinstance(buckets, int):
        raise TypeError(f"buckets must be an int, not {type(buckets).__name__}")
    if not 0 <= key <= _M64:
        raise ValueError(f"key must be in [0, 2**64), got {key}")
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets}")
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * _LCG + 1) & _M64
        j = int((b + 1) * (2147483648.0 / ((key >> 33) + 1)))
    return b


def key_hash64(key: str | bytes) -> int:
    """The 64-bit key hash :class:`JumpHash` uses: the first 64 bits of MurmurHash3 x64_128
    (seed 0, unsigned) of the key's UTF-8 bytes."""
    h: int = mmh3.hash64(key_bytes(key), 0, True, signed=False)[0]
    return h


class JumpHash:
    """Named buckets over :func:`jump_hash`: node ``i`` of the list is bucket ``i``.

    Args:
        nodes: node names, in bucket order (appending keeps every earlier key in place).

    Raises:
        ConfigurationError: an empty or duplicate name.
        TypeError: a name that is not ``str``.
    """

    def __init__(self, nodes: Iterable[str] = ()) -> None:
        self._nodes = parse_names(nodes)
        self._lock = threading.Lock()

    def get_node(self, key: str | bytes) -> str:
        """The node for ``key``.

        Raises:
            TypeError: the key is neither ``str`` nor ``bytes``.
            EmptyRingError: there are no nodes.
        """
        h = key_hash64(key)
        nodes = self._nodes  # one read: a concurrent writer swaps the whole tuple
        if not nodes:
            raise EmptyRingError("JumpHash has no nodes")
        return nodes[jump_hash(h, len(nodes))]

    def add_node(self, name: str) -> None:
        """Append a node as the next bucket: only keys moving to it change owner."""
        check_node(name)
        with self._lock:
            if name in self._nodes:
                raise ConfigurationError(f"node {name!r} is already present")
            self._nodes = (*self._nodes, name)

    def remove_node(self, name: str) -> None:
        """Remove a node. The last node's removal moves only its own keys; removing another
        node moves the last node into its slot (its keys and the removed node's keys move).

        Raises:
            KeyError: the node is not present.
        """
        with self._lock:
            nodes = list(self._nodes)
            if name not in nodes:
                raise KeyError(name)
            i = nodes.index(name)
            last = nodes.pop()
            if i < len(nodes):
                nodes[i] = last
            self._nodes = tuple(nodes)

    @property
    def nodes(self) -> tuple[str, ...]:
        """The node names in bucket order."""
        return self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def __repr__(self) -> str:
        return f"JumpHash({list(self._nodes)!r})"
