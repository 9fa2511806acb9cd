"""Weighted rendezvous (highest-random-weight) hashing.

Thaler & Ravishankar, "Using name-based mappings to increase hit rates", IEEE/ACM ToN 1998; the
weighted form is the logarithmic method (Schindelhauer & Schomaker, "Weighted distributed hash
tables", SPAA 2005; also Resch, "New hashing algorithms for data storage", 2015): node ``i`` with
weight ``w_i`` scores ``w_i / -ln(u_i)`` where ``u_i`` in ``(0, 1)`` is a hash of (node, key);
the key goes to the highest score. Each node wins a share of keys proportional to its weight,
exactly in expectation.

``u_i`` is the first 64 bits of MurmurHash3 x64_128 (seed 0) over
``len(name) as 4 big-endian bytes + name + key`` (the length prefix makes the concatenation
unambiguous), reduced to 53 bits. Ties (equal scores) go to the smaller name.

Guarantees: removing a node moves only its keys, each to the node that scored second for it;
adding a node moves to it exactly the keys it now wins; changing a weight moves keys only between
that node and the others. ``get_nodes(key, n)`` lists nodes by score: entry ``i`` owns the key
once entries ``0..i-1`` are gone.

Failure modes: a lookup computes one hash per node (O(n)): fine for tens of nodes, slow for
thousands (use :class:`~dsprims.hashing.HashRing` there).
"""

from __future__ import annotations

import heapq
import math
import threading
from collections.abc import Iterable, Mapping
from types import MappingProxyType

import mmh3

from dsprims.hashing._common import EmptyRingError, check_node, check_weight, key_bytes, parse_nodes

__all__ = ["RendezvousHash"]

_hash64 = mmh3.hash64
_log = math.log
_SCALE = 1.0 / (1 << 53)


def _prefix(name: str) -> bytes:
    raw = name.encode()
    return len(raw).to_bytes(4, "big") + raw


class RendezvousHash:
    """Weighted highest-random-weight hashing.

    Args:
        nodes: node names, or a mapping name -> weight (positive, finite).

    Raises:
        ConfigurationError: a weight <= 0, NaN or infinite, or an empty or duplicate name.
        TypeError: a name that is not ``str`` or a weight that is not a number.
    """

    def __init__(self, nodes: Iterable[str] | Mapping[str, float] = ()) -> None:
        self._lock = threading.Lock()
        self._install(parse_nodes(nodes))

    def _install(self, weights: dict[str, float]) -> None:
        # One tuple swapped atomically: readers never see a half-updated node list.
        self._weights = weights
        self._entries = tuple((_prefix(n), w, n) for n, w in sorted(weights.items()))

    def _scores(self, key: str | bytes) -> list[tuple[float, str]]:
        data = key_bytes(key)
        entries = self._entries
        if not entries:
            raise EmptyRingError("RendezvousHash has no nodes")
        out = []
        for prefix, weight, name in entries:
            u = ((_hash64(prefix + data, 0, True, signed=False)[0] >> 11) + 0.5) * _SCALE
            out.append((weight / -_log(u), name))
        return out

    def get_node(self, key: str | bytes) -> str:
        """The node with the highest score for ``key``.

        Raises:
            TypeError: the key is neither ``str`` nor ``bytes``.
            EmptyRingError: there are no nodes.
        """
        best_score, best = -1.0, ""
        for score, name in self._scores(key):
            # Names are visited in sorted order, so ">" keeps the smaller name on a tie.
            if score > best_score:
                best_score, best = score, name
        return best

    def get_nodes(self, key: str | bytes, n: int) -> list[str]:
        """Up to ``n`` distinct nodes in decreasing score (failover order) for ``key``.

        Raises:
            ValueError: ``n < 1``.
            TypeError: the key is neither ``str`` nor ``bytes``.
            EmptyRingError: there are no nodes.
        """
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an int, not {type(n).__name__}")
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        scores = self._scores(key)
        top = heapq.nsmallest(n, scores, key=lambda sn: (-sn[0], sn[1]))
        return [name for _, name in top]

    def add_node(self, name: str, weight: float = 1.0) -> None:
        """Add a node, or change the weight of a node already present."""
        check_node(name)
        value = check_weight(weight)
        with self._lock:
            self._install({**self._weights, name: value})

    def remove_node(self, name: str) -> None:
        """Remove a node; each of its keys moves to the node that scored second for it.

        Raises:
            KeyError: the node is not present.
        """
        with self._lock:
            if name not in self._weights:
                raise KeyError(name)
            self._install({n: w for n, w in self._weights.items() if n != name})

    @property
    def nodes(self) -> Mapping[str, float]:
        """A read-only view of node name -> weight."""
        return MappingProxyType(self._weights)

    def __len__(self) -> int:
        return len(self._weights)

    def __contains__(self, name: object) -> bool:
        return name in self._weights

    def __repr__(self) -> str:
        return f"RendezvousHash({self._weights!r})"
