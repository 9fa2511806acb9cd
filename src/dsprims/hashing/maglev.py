"""Maglev hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
Balancer", NSDI 2016, section 3.4).

Each node derives a permutation of the ``table_size`` slots from two hashes of its name
(``offset = h1 % M``, ``skip = h2 % (M - 1) + 1``, slot ``j`` of the permutation is
``(offset + j * skip) % M``; ``M`` prime makes every permutation complete). Nodes take turns,
in name order, claiming their next free preferred slot until the table is full. A lookup is one
hash and one list index.

``h1`` and ``h2`` are the two 64-bit halves of MurmurHash3 x64_128 (seed 0) of the node name; a
key's slot is its 32-bit MurmurHash3 (seed 0, unsigned) modulo ``M``.

Guarantees: every node owns ``floor(M/n)`` or ``ceil(M/n)`` slots (near-perfect balance), and the
table depends only on the set of names, not on insertion order.

Failure modes: disruption is small but not minimal: a membership change moves the keys of the
node that left or arrived *plus* a few percent of other slots between surviving nodes (the paper
measures about 1-2% extra with M = 65537 and 1,000 nodes; more with few nodes). Building the table
is O(M log M) Python work (tens of milliseconds at M = 65537); rebuilds happen on every change.
There are no weights and no preference lists. ``table_size`` must be a prime larger than the
number of nodes; the paper recommends at least 100 times the number of nodes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import mmh3

from dsprims.errors import ConfigurationError
from dsprims.hashing._common import EmptyRingError, check_node, key_hash32, parse_names

__all__ = ["MaglevHash"]


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


def maglev_table(nodes: Iterable[str], size: int) -> list[str]:
    """The lookup table: slot -> node name, for nodes in any order (they are sorted first)."""
    names = sorted(nodes)
    if not names:
        return []
    offsets, skips = [], []
    for name in names:
        h1, h2 = mmh3.hash64(name.encode(), 0, True, signed=False)
        offsets.append(h1 % size)
        skips.append(h2 % (size - 1) + 1)
    slots: list[int] = [-1] * size
    nexts = [0] * len(names)
    filled = 0
    count = len(names)
    while True:
        for i in range(count):
            offset, skip, j = offsets[i], skips[i], nexts[i]
            c = (offset + j * skip) % size
            while slots[c] >= 0:
                j += 1
                c = (offset + j * skip) % size
            slots[c] = i
            nexts[i] = j + 1
            filled += 1
            if filled == size:
                return [names[i] for i in slots]


class MaglevHash:
    """A Maglev lookup table over named nodes.

    Args:
        nodes: node names (their order does not matter).
        table_size: the number of slots, a prime larger than the number of nodes (default
            65537, as in the paper).

    Raises:
        ConfigurationError: ``table_size`` is not a prime above the node count, or an empty or
            duplicate name.
        TypeError: a name that is not ``str``, or ``table_size`` that is not an int.
    """

    def __init__(self, nodes: Iterable[str] = (), table_size: int = 65537) -> None:
        if isinstance(table_size, bool) or not isinstance(table_size, int):
            raise TypeError(f"table_size must be an int, not {type(table_size).__name__}")
        if not _is_prime(table_size):
            raise ConfigurationError(f"table_size must be a prime number, got {table_size}")
        names = parse_names(nodes)
        self._size = table_size
        self._lock = threading.Lock()
        self._install(names)

    def _install(self, names: tuple[str, ...]) -> None:
        if len(names) >= self._size:
            raise ConfigurationError(
                f"table_size ({self._size}) must exceed the number of nodes ({len(names)})"
            )
        table = maglev_table(names, self._size)
        # Readers index (names, table) from one tuple read: always a matching pair.
        self._state = (names, table)

    def get_node(self, key: str | bytes) -> str:
        """The node for ``key``: ``table[murmur3_32(key) % table_size]``.

        Raises:
            TypeError: the key is neither ``str`` nor ``bytes``.
            EmptyRingError: there are no nodes.
        """
        h = key_hash32(key)
        table = self._state[1]
        if not table:
            raise EmptyRingError("MaglevHash has no nodes")
        return table[h % self._size]

    def add_node(self, name: str) -> None:
        """Add a node (rebuilds the table)."""
        check_node(name)
        with self._lock:
            names = self._state[0]
            if name in names:
                raise ConfigurationError(f"node {name!r} is already present")
            self._install((*names, name))

    def remove_node(self, name: str) -> None:
        """Remove a node (rebuilds the table).

        Raises:
            KeyError: the node is not present.
        """
        with self._lock:
            names = self._state[0]
            if name not in names:
                raise KeyError(name)
            self._install(tuple(n for n in names if n != name))

    @property
    def table_size(self) -> int:
        """The number of slots."""
        return self._size

    @property
    def nodes(self) -> tuple[str, ...]:
        """The node names, in the order they were given."""
        return self._state[0]

    def slots(self) -> list[str]:
        """A copy of the lookup table (slot -> node)."""
        return list(self._state[1])

    def __len__(self) -> int:
        return len(self._state[0])

    def __contains__(self, name: object) -> bool:
        return name in self._state[0]

    def __repr__(self) -> str:
        return f"MaglevHash({list(self._state[0])!r}, table_size={self._size})"
