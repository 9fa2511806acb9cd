"""Consistent hashing with bounded loads (Mirrokni, Thorup & Zadimoghaddam, "Consistent Hashing
with Bounded Loads", SODA 2018; the scheme behind HAProxy's ``hash-balance-factor`` and Envoy's
ring-hash/Maglev load balancing with bounded load).

Keys are placed on a :class:`~dsprims.hashing.HashRing`. With ``m`` keys assigned over ``n``
nodes and balance parameter ``c = load_factor >= 1``, a new key may go to a node only while that
node holds fewer than ``ceil(c * (m + 1) / n)`` keys; otherwise it moves on to the next node of its
preference list (:meth:`HashRing.get_nodes` order) until one has room. Some node always has room
(the average is below the cap), so every acquire succeeds, and after it no node holds more than
``ceil(c * m' / n)`` keys, ``m'`` being the new total: the **hard cap**.

Guarantees: each acquire returns a node whose load, counting the new key, is at most the cap for
the new total; a key stays on its node until released (sticky); with ``c`` close to 1 the balance
is near-perfect, with larger ``c`` more keys sit on their first-choice node. The choice is a pure
function (:func:`choose_bounded`) of the preference list, the loads and the cap.

Failure modes: releases never move other keys (that would break stickiness), so after releases a
node can sit above the cap of the *smaller* total until its keys are released; acquires re-impose
the cap on every node they assign to. Removing a node reassigns its keys under the same rule.
State is in process memory: each process balances its own keys.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from fractions import Fraction

from dsprims.errors import ConfigurationError
from dsprims.hashing._common import EmptyRingError, check_node, key_bytes, parse_nodes
from dsprims.hashing.ring import HashRing

__all__ = ["BoundedLoadBalancer", "bounded_capacity", "choose_bounded"]


def bounded_capacity(load_factor: Fraction, keys: int, nodes: int) -> int:
    """The hard cap ``ceil(load_factor * keys / nodes)`` in exact arithmetic."""
    return math.ceil(load_factor * keys / nodes)


def choose_bounded(candidates: Iterable[str], loads: Mapping[str, int], cap: int) -> str:
    """The first candidate whose load is below ``cap`` (pure decision of the balancer).

    Raises:
        LookupError: no candidate has room (impossible when ``cap`` is at least the average).
    """
    for node in candidates:
        if loads[node] < cap:
            return node
    raise LookupError(f"no node has fewer than {cap} keys")


class BoundedLoadBalancer:
    """Sticky key -> node assignment on a hash ring with a hard per-node cap.

    Args:
        nodes: node names (equal capacity).
        load_factor: ``c >= 1``: no node holds more than ``ceil(c * m / n)`` of ``m`` keys
            (default 1.25, the paper's example; it is read as the nearest fraction with a
            denominator up to 10,000, so ``1.1`` means exactly 11/10).
        vnodes: points per node of the underlying :class:`HashRing` (``None``: its default).

    Raises:
        ConfigurationError: ``load_factor`` below 1, NaN or infinite; an empty or duplicate name.
        TypeError: a name that is not ``str`` or a ``load_factor`` that is not a number.

    Thread-safe: a lock serialises acquire, release and membership changes.
    """

    def __init__(
        self,
        nodes: Iterable[str] = (),
        *,
        load_factor: float = 1.25,
        vnodes: int | None = None,
    ) -> None:
        if isinstance(load_factor, bool) or not isinstance(load_factor, int | float):
            raise TypeError(f"load_factor must be a number, not {type(load_factor).__name__}")
        if not math.isfinite(load_factor) or load_factor < 1:
            raise ConfigurationError(f"load_factor must be a finite number >= 1, got {load_factor}")
        weights = parse_nodes(nodes)
        if any(w != 1.0 for w in weights.values()):
            raise ConfigurationError("BoundedLoadBalancer nodes have equal capacity: no weights")
        self._factor = Fraction(load_factor).limit_denominator(10_000)
        self._ring = HashRing(list(weights), vnodes=vnodes)
        self._loads: dict[str, int] = dict.fromkeys(weights, 0)
        self._owner: dict[bytes, str] = {}
        self._lock = threading.Lock()

    @property
    def load_factor(self) -> Fraction:
        """The balance parameter ``c`` as an exact fraction."""
        return self._factor

    def capacity(self, keys: int | None = None) -> int:
        """The cap for ``keys`` assigned keys (default: the current number)."""
        total = len(self._owner) if keys is None else keys
        if not self._loads:
            raise EmptyRingError("BoundedLoadBalancer has no nodes")
        return bounded_capacity(self._factor, total, len(self._loads))

    def _place(self, key: bytes) -> str:
        if not self._loads:
            raise EmptyRingError("BoundedLoadBalancer has no nodes")
        cap = bounded_capacity(self._factor, len(self._owner) + 1, len(self._loads))
        first = self._ring.get_node(key)
        if self._loads[first] < cap:
            node = first
        else:
            node = choose_bounded(self._ring.get_nodes(key, len(self._loads)), self._loads, cap)
        self._owner[key] = node
        self._loads[node] += 1
        return node

    def acquire(self, key: str | bytes) -> str:
        """Assign ``key`` to a node (or return the node it already has).

        Raises:
            TypeError: the key is neither ``str`` nor ``bytes``.
            EmptyRingError: there are no nodes.
        """
        data = key_bytes(key)
        with self._lock:
            node = self._owner.get(data)
            if node is not None:
                return node
            return self._place(data)

    def release(self, key: str | bytes) -> None:
        """Free ``key``'s slot on its node.

        Raises:
            KeyError: the key is not assigned.
        """
        data = key_bytes(key)
        with self._lock:
            node = self._owner.pop(data)
            self._loads[node] -= 1

    def node_of(self, key: str | bytes) -> str | None:
        """The node ``key`` is assigned to, or ``None``."""
        return self._owner.get(key_bytes(key))

    def loads(self) -> dict[str, int]:
        """A snapshot of node -> number of assigned keys."""
        with self._lock:
            return dict(self._loads)

    def add_node(self, name: str) -> None:
        """Add a node; new keys may go to it (assigned keys stay where they are)."""
        check_node(name)
        with self._lock:
            if name in self._loads:
                raise ConfigurationError(f"node {name!r} is already present")
            self._ring.add_node(name)
            self._loads[name] = 0

    def remove_node(self, name: str) -> dict[bytes, str]:
        """Remove a node and reassign its keys under the cap; returns key bytes -> new node.

        Raises:
            KeyError: the node is not present.
        """
        with self._lock:
            if name not in self._loads:
                raise KeyError(name)
            orphans = sorted(k for k, n in self._owner.items() if n == name)
            for key in orphans:
                del self._owner[key]
            del self._loads[name]
            self._ring.remove_node(name)
            return {key: self._place(key) for key in orphans}

    @property
    def nodes(self) -> tuple[str, ...]:
        """The node names."""
        return tuple(self._loads)

    def __len__(self) -> int:
        return len(self._loads)

    def __contains__(self, name: object) -> bool:
        return name in self._loads

    def __repr__(self) -> str:
        return f"BoundedLoadBalancer({list(self._loads)!r}, load_factor={float(self._factor)})"
