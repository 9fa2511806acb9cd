"""Vector clocks (Fidge 1988, Mattern 1989) as immutable, sparse, hashable values.

A vector clock maps each node to the number of events it has seen from that node. Comparing two
clocks pointwise characterises happens-before exactly: ``a`` happened before ``b`` if and only if
``a <= b`` entry by entry and ``a != b``; when neither dominates, the events are concurrent.
Entries that are missing count as 0 and are never stored, so ``VectorClock({"a": 0}) ==
VectorClock()``.

Guarantees:

* :meth:`VectorClock.merge` is the least upper bound (pointwise max): commutative, associative,
  idempotent, and the smallest clock that dominates both inputs.
* :meth:`VectorClock.compare` returns :class:`Ordering` ``BEFORE``, ``AFTER``, ``EQUAL`` or
  ``CONCURRENT``; the operators are the partial order itself, with no hidden tie-breaking:
  concurrent clocks are neither ``<``, ``>``, ``<=`` nor ``>=`` each other.

Failure modes:

* Size grows with the number of nodes that ever wrote. :meth:`VectorClock.prune` implements
  Riak's pruning (``small_vclock``/``big_vclock``/``young_vclock``/``old_vclock``), which bounds
  the size at the cost of exactness: a pruned clock may look CONCURRENT with a clock it actually
  descends from (a false conflict) and, if both sides were pruned, may hide a real conflict.
* Node ids must be unique per writer; two writers sharing an id make their concurrent updates
  look ordered.

Representation: the sorted node ids in a tuple, and every counter in one fixed-width field
(9 bytes: 64 counter bits, then a guard bit) of a single big integer. Merge and compare of
clocks over the same nodes are then a few big-integer operations ("SIMD within a register")
that CPython runs in C, instead of a Python-level step per node; when one clock has a few nodes
the other lacks, empty fields are spliced in first. Counters are therefore limited to ``2**64 - 1``
(:data:`MAX_COUNTER`), beyond any realistic event count.
"""

from __future__ import annotations

import enum
import json
import struct
import sys
import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import repeat
from typing import Any, TypeVar

from dsprims.clocks.message import Stamped
from dsprims.errors import ConfigurationError

__all__ = ["MAX_COUNTER", "Ordering", "PrunePolicy", "VectorClock", "VectorClockNode"]

P = TypeVar("P")


class Ordering(enum.Enum):
    """How two vector clocks (or the events they stamp) relate."""

    #: The left clock happened before the right one.
    BEFORE = "before"
    #: The left clock happened after the right one.
    AFTER = "after"
    #: The clocks are equal.
    EQUAL = "equal"
    #: Neither happened before the other.
    CONCURRENT = "concurrent"


_object_new = object.__new__

# Packed representation. Counters live in one big integer, one fixed-width field per node in the
# order of the sorted node ids: field i holds the counter of nodes[i] in bits [i*_F, i*_F + _W)
# and bit i*_F + _W is a guard bit, always 0 in a stored clock (as are the bits above it). Pointwise
# <= and max then reduce to a handful of big-integer operations that CPython runs in C over
# machine words ("SIMD within a register"), instead of one Python-level comparison per node:
#
#   (B | G) - A      never borrows across fields (each field computes 2**_W + b_i - a_i > 0),
#                    and keeps field i's guard bit iff b_i >= a_i.
#
# Fields are 9 bytes wide so that packing and unpacking all counters is one struct call over the
# integer's little-endian bytes.
_W = 64
_F = 72
_FIELD_BYTES = _F // 8
#: Counters are below 2**64 (more than 10**19 events per node).
MAX_COUNTER = (1 << _W) - 1
_GUARDS: dict[int, int] = {}
_STRUCTS: dict[int, struct.Struct] = {}
# Cache per clock size only up to this many nodes: a guard mask costs 9 bytes per node, so the
# cache stays around a megabyte however many sizes appear; bigger clocks recompute (O(n)).
_CACHE_MAX_NODES = 512


def _guards(n: int) -> int:
    """The guard bits of an n-field packing (cached: clocks keep a few distinct sizes)."""
    g = _GUARDS.get(n)
    if g is None:
        ones = ((1 << (n * _F)) - 1) // ((1 << _F) - 1)  # bit 0 of every field
        g = ones << _W
        if n <= _CACHE_MAX_NODES:
            _GUARDS[n] = g
    return g


def _layout(n: int) -> struct.Struct:
    layout = _STRUCTS.get(n)
    if layout is None:
        layout = struct.Struct("<" + "Qx" * n)  # 8 counter bytes, 1 guard byte per field
        if n <= _CACHE_MAX_NODES:
            _STRUCTS[n] = layout
    return layout


def _pack(counts: Iterable[int], n: int) -> int:
    return int.from_bytes(_layout(n).pack(*counts), "little")


def _unpack(packed: int, n: int) -> tuple[int, ...]:
    counts: tuple[int, ...] = _layout(n).unpack(packed.to_bytes(n * _FIELD_BYTES, "little"))
    return counts


def _checked(mapping: Mapping[str, int] | Iterable[tuple[str, int]]) -> dict[str, int]:
    items = mapping.items() if isinstance(mapping, Mapping) else mapping
    out: dict[str, int] = {}
    for node, count in items:
        if not isinstance(node, str):
            raise TypeError(f"vector clock node ids must be str, got {type(node).__name__}")
        if isinstance(count, bool) or not isinstance(count, int):
            raise TypeError(f"counter of node {node!r} must be an int, got {type(count).__name__}")
        if not 0 <= count <= MAX_COUNTER:
            raise ValueError(f"counter of node {node!r} must be in [0, 2**64 - 1], got {count!r}")
        if count:
            # Interned ids make the node tuples of related clocks compare by identity.
            out[sys.intern(str(node))] = count
        else:
            out.pop(node, None)
    return out


def _le_aligned(a: int, b: int, n: int) -> bool:
    """Pointwise a <= b for two packings over the same nodes."""
    g = _GUARDS.get(n) or _guards(n)
    return ((b | g) - a) & g == g


def _max_aligned(a: int, b: int, n: int) -> int:
    """Pointwise max of two packings over the same nodes (returns ``a`` or ``b`` if it is)."""
    g = _GUARDS.get(n) or _guards(n)
    b_ge = ((b | g) - a) & g  # guard bit set where b_i >= a_i
    if b_ge == g:
        return b
    if not b_ge:
        return a
    take_b = b_ge >> _W
    mask = (take_b << _W) - take_b  # counter bits of every field where b wins
    return (b & mask) | (a & ~mask)


def _insert_zero_fields(packed: int, positions: Iterable[int]) -> int:
    """Insert empty fields so that they land at ``positions`` (increasing) of the result."""
    for position in positions:
        shift = position * _F
        packed = (packed & ((1 << shift) - 1)) | ((packed >> shift) << (shift + _F))
    return packed


#: Above this many extra nodes, re-packing through a dict beats inserting fields one by one.
_FEW = 8


def _embed(small: VectorClock, big: tuple[str, ...]) -> int | None:
    """``small``'s packing re-laid onto ``big`` when its nodes are a subset of ``big``, else None.

    ``big`` is sorted and longer than ``small``'s nodes.
    """
    nodes = small._nodes
    n = len(nodes)
    extra = len(big) - n
    if extra <= _FEW:
        # If nodes is a subset of big, "nodes[i] == big[i + found]" holds below the next extra
        # node and fails from it on, so each extra node is found by bisection.
        positions: list[int] = []
        lo = 0
        for found in range(extra):
            hi = n
            while lo < hi:
                mid = (lo + hi) // 2
                if nodes[mid] == big[mid + found]:
                    lo = mid + 1
                else:
                    hi = mid
            positions.append(lo + found)
        kept: tuple[str, ...] = ()
        start = 0
        for position in positions:
            kept += big[start:position]
            start = position + 1
        kept += big[start:]
        if kept != nodes:
            return None
        return _insert_zero_fields(small._packed, positions)
    if not set(nodes).issubset(big):
        return None
    counts = dict(zip(nodes, _unpack(small._packed, n), strict=True))
    return _pack(map(counts.get, big, repeat(0)), len(big))


def _realign(clock: VectorClock, nodes: tuple[str, ...]) -> int:
    """Re-pack ``clock`` onto ``nodes``, a sorted superset of its nodes."""
    if len(nodes) == len(clock._nodes):
        return clock._packed
    embedded = _embed(clock, nodes)
    if embedded is None:  # pragma: no cover - callers pass supersets
        raise AssertionError("realign target is not a superset")
    return embedded


@dataclass(frozen=True, slots=True)
class PrunePolicy:
    """Riak's vector clock pruning parameters (``riak_kv`` bucket properties).

    Pruning drops the least recently updated entries, oldest first, while all of these hold:
    the clock has more than ``small`` entries, the oldest entry is at least ``young`` seconds
    old, and either the clock has more than ``big`` entries or the oldest entry is more than
    ``old`` seconds old. Riak's defaults are ``small=50, big=50, young=20, old=86400``.

    Attributes:
        small: never prune a clock with at most this many entries.
        big: prune down to this many entries even when they are not ``old``.
        young: never prune an entry updated less than this many seconds ago.
        old: prune entries not updated for more than this many seconds.
    """

    small: int = 50
    big: int = 50
    young: float = 20.0
    old: float = 86_400.0

    def __post_init__(self) -> None:
        for name in ("small", "big"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
            if value < 0:
                raise ConfigurationError(f"{name} must be >= 0, got {value!r}")
        for name in ("young", "old"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
            if not value >= 0:
                raise ConfigurationError(f"{name} must be >= 0, got {value!r}")
        if self.big < self.small:
            raise ConfigurationError(f"big ({self.big}) must be >= small ({self.small})")


class VectorClock:
    """An immutable, sparse, hashable vector clock.

    Args:
        mapping: node id (``str``) to counter (``int`` in ``[0, 2**64)``), as a mapping or as
            pairs; zero counters are dropped. ``None`` is the empty clock.

    Raises:
        TypeError: a node id is not a ``str`` or a counter not an ``int``.
        ValueError: a counter is negative or not below ``2**64``.

    Example:
        >>> a = VectorClock().increment("a")
        >>> b = a.increment("b")
        >>> c = a.increment("c")
        >>> (a < b, b.compare(c), b.merge(c).to_dict())
        (True, <Ordering.CONCURRENT: 'concurrent'>, {'a': 1, 'b': 1, 'c': 1})
    """

    __slots__ = ("_hash", "_nodes", "_packed")

    _nodes: tuple[str, ...]
    _packed: int
    _hash: int

    def __init__(
        self, mapping: Mapping[str, int] | Iterable[tuple[str, int]] | None = None
    ) -> None:
        counts = {} if mapping is None else _checked(mapping)
        self._nodes = nodes = tuple(sorted(counts))
        self._packed = _pack(map(counts.__getitem__, nodes), len(nodes))
        self._hash = -1  # never a real hash value: CPython maps -1 to -2

    @classmethod
    def _wrap(cls, nodes: tuple[str, ...], packed: int) -> VectorClock:
        # Trusted constructor for the hot paths: sorted nodes, every field non-zero.
        clock: VectorClock = _object_new(cls)
        clock._nodes = nodes
        clock._packed = packed
        clock._hash = -1
        return clock

    @classmethod
    def from_dict(cls, data: Mapping[str, int]) -> VectorClock:
        """Build a clock from a ``{node: counter}`` mapping (the inverse of :meth:`to_dict`).

        Raises:
            TypeError: ``data`` is not a mapping, or has keys or values of the wrong type.
            ValueError: a counter is out of range.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"data must be a mapping, got {type(data).__name__}")
        return cls(data)

    def to_dict(self) -> dict[str, int]:
        """A new ``{node: counter}`` dict of the non-zero entries, in node order."""
        nodes = self._nodes
        return dict(zip(nodes, _unpack(self._packed, len(nodes)), strict=True))

    def to_json(self) -> str:
        """The compact JSON form, e.g. ``{"a":3,"b":1}`` (keys sorted, no spaces)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> VectorClock:
        """Parse the JSON form written by :meth:`to_json` (any JSON object of counters).

        Raises:
            ValueError: ``text`` is not a JSON object of counters in range.
            TypeError: ``text`` is not ``str`` or ``bytes``, or holds non-integer counters.
        """
        if not isinstance(text, str | bytes):
            raise TypeError(f"text must be str or bytes, got {type(text).__name__}")
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("text must hold a JSON object")
        return cls(data)

    # -- reading -------------------------------------------------------------------------------

    def get(self, node: str) -> int:
        """The counter of ``node`` (0 when absent)."""
        nodes = self._nodes
        i = bisect_left(nodes, node) if isinstance(node, str) else len(nodes)
        if i < len(nodes) and nodes[i] == node:
            return (self._packed >> (i * _F)) & MAX_COUNTER
        return 0

    __getitem__ = get

    def __contains__(self, node: object) -> bool:
        if not isinstance(node, str):
            return False
        nodes = self._nodes
        i = bisect_left(nodes, node)
        return i < len(nodes) and nodes[i] == node

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[str]:
        return iter(self._nodes)

    def items(self) -> Iterable[tuple[str, int]]:
        """The non-zero ``(node, counter)`` entries, in node order."""
        return self.to_dict().items()

    @property
    def nodes(self) -> tuple[str, ...]:
        """The nodes with a non-zero counter, sorted."""
        return self._nodes

    # -- the lattice ---------------------------------------------------------------------------

    def increment(self, node: str) -> VectorClock:
        """A copy with ``node``'s counter one higher (a local event on ``node``).

        Raises:
            TypeError: ``node`` is not a ``str``.
            OverflowError: the counter would reach ``2**64``.
        """
        if node.__class__ is not str:
            if not isinstance(node, str):
                raise TypeError(f"node must be a str, got {type(node).__name__}")
            node = str(node)
        nodes = self._nodes
        packed = self._packed
        i = bisect_left(nodes, node)
        shift = i * _F
        if i < len(nodes) and nodes[i] == node:
            if (packed >> shift) & MAX_COUNTER == MAX_COUNTER:
                raise OverflowError(f"counter of node {node!r} would exceed 2**64 - 1")
            # The node tuple is shared, so later compares between the two clocks hit `is`.
            return VectorClock._wrap(nodes, packed + (1 << shift))
        high = (packed >> shift) << (shift + _F)
        low = packed & ((1 << shift) - 1)
        return VectorClock._wrap(
            (*nodes[:i], sys.intern(node), *nodes[i:]), high | (1 << shift) | low
        )

    def merge(self, other: VectorClock) -> VectorClock:
        """The least upper bound: the pointwise maximum of both clocks.

        Raises:
            TypeError: ``other`` is not a :class:`VectorClock`.
        """
        if other.__class__ is not VectorClock and not isinstance(other, VectorClock):
            raise TypeError(f"other must be a VectorClock, got {type(other).__name__}")
        nodes = self._nodes
        if nodes is other._nodes or nodes == other._nodes:
            a = self._packed
            b = other._packed
            merged = _max_aligned(a, b, len(nodes))
            # Reuse an input when it already is the least upper bound: no allocation.
            if merged is b:
                return other
            if merged is a:
                return self
            return VectorClock._wrap(nodes, merged)
        return self._merge_unaligned(other)

    def _merge_unaligned(self, other: VectorClock) -> VectorClock:
        mine, theirs = self._nodes, other._nodes
        if len(mine) < len(theirs):
            embedded = _embed(self, theirs)
            if embedded is not None:
                return VectorClock._wrap(theirs, _max_aligned(embedded, other._packed, len(theirs)))
        elif len(theirs) < len(mine):
            embedded = _embed(other, mine)
            if embedded is not None:
                return VectorClock._wrap(mine, _max_aligned(self._packed, embedded, len(mine)))
        union = tuple(sorted({*mine, *theirs}))
        a = _realign(self, union)
        b = _realign(other, union)
        return VectorClock._wrap(union, _max_aligned(a, b, len(union)))

    def compare(self, other: VectorClock) -> Ordering:
        """How this clock relates to ``other`` under happens-before.

        Raises:
            TypeError: ``other`` is not a :class:`VectorClock`.
        """
        if other.__class__ is not VectorClock and not isinstance(other, VectorClock):
            raise TypeError(f"other must be a VectorClock, got {type(other).__name__}")
        nodes = self._nodes
        a = self._packed
        b = other._packed
        if nodes is other._nodes or nodes == other._nodes:
            if a == b:
                return Ordering.EQUAL
            g = _GUARDS.get(len(nodes)) or _guards(len(nodes))
            if ((b | g) - a) & g == g:
                return Ordering.BEFORE
            if ((a | g) - b) & g == g:
                return Ordering.AFTER
            return Ordering.CONCURRENT
        # Stored counters are > 0, so a clock with a node the other lacks is not <= the other:
        # only a strict subset of nodes can be BEFORE (or AFTER, the other way round).
        theirs = other._nodes
        if len(nodes) < len(theirs):
            embedded = _embed(self, theirs)
            if embedded is not None and _le_aligned(embedded, b, len(theirs)):
                return Ordering.BEFORE
        elif len(theirs) < len(nodes):
            embedded = _embed(other, nodes)
            if embedded is not None and _le_aligned(embedded, a, len(nodes)):
                return Ordering.AFTER
        return Ordering.CONCURRENT

    def _le(self, other: VectorClock) -> bool:
        nodes = self._nodes
        theirs = other._nodes
        if nodes is theirs or nodes == theirs:
            return _le_aligned(self._packed, other._packed, len(nodes))
        if len(nodes) >= len(theirs):
            return False
        embedded = _embed(self, theirs)
        return embedded is not None and _le_aligned(embedded, other._packed, len(theirs))

    def descends(self, other: VectorClock) -> bool:
        """``self >= other``: this clock has seen every event ``other`` has."""
        return self >= other

    def concurrent_with(self, other: VectorClock) -> bool:
        """Neither clock descends from the other."""
        return self.compare(other) is Ordering.CONCURRENT

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VectorClock):
            return NotImplemented
        return self._packed == other._packed and self._nodes == other._nodes

    def __ne__(self, other: object) -> bool:
        if not isinstance(other, VectorClock):
            return NotImplemented
        return self._packed != other._packed or self._nodes != other._nodes

    def __le__(self, other: object) -> bool:
        if not isinstance(other, VectorClock):
            return NotImplemented
        return self._le(other)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, VectorClock):
            return NotImplemented
        return self != other and self._le(other)

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, VectorClock):
            return NotImplemented
        return other._le(self)

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, VectorClock):
            return NotImplemented
        return self != other and other._le(self)

    def __hash__(self) -> int:
        h = self._hash
        if h == -1:
            h = self._hash = hash((self._nodes, self._packed))
        return h

    def __reduce__(self) -> tuple[Any, ...]:
        # Never pickle the cached hash: str hashes differ between processes.
        return (VectorClock, (self.to_dict(),))

    def __repr__(self) -> str:
        return f"VectorClock({self.to_dict()!r})"

    # -- pruning -------------------------------------------------------------------------------

    def prune(
        self, policy: PrunePolicy, last_modified: Mapping[str, float], now: float
    ) -> VectorClock:
        """Riak-style pruning: drop the least recently updated entries (see :class:`PrunePolicy`).

        Args:
            policy: the thresholds.
            last_modified: for every node of this clock, when its entry last changed (seconds,
                on the same time scale as ``now``), as the application recorded it.
            now: the current time on that scale.

        Returns:
            The pruned clock (``self`` when nothing is pruned).

        Raises:
            ValueError: ``last_modified`` lacks a node of this clock.
        """
        if len(self._nodes) <= policy.small:
            return self
        missing = [node for node in self._nodes if node not in last_modified]
        if missing:
            raise ValueError(f"last_modified has no time for nodes {sorted(missing)!r}")
        # Oldest first; the node id breaks ties so the result does not depend on dict order.
        order = sorted(self._nodes, key=lambda node: (last_modified[node], node))
        keep = len(order)
        for node in order:
            if keep <= policy.small:
                break
            age = now - last_modified[node]
            if age < policy.young:
                break
            if not (keep > policy.big or age > policy.old):
                break
            keep -= 1
        if keep == len(order):
            return self
        dropped = set(order[: len(order) - keep])
        return VectorClock({n: c for n, c in self.to_dict().items() if n not in dropped})


class VectorClockNode:
    """The vector clock of one node, updated in place under a lock.

    :class:`VectorClock` values are immutable; a process needs one mutable cell that holds its
    current clock and applies the vector clock rules to it: a local or send event increments the
    node's own entry; a receive event merges the message's clock, then increments.

    Args:
        node_id: this node's id in the clocks.
        start: the clock to resume from (default: empty).

    Raises:
        TypeError: ``node_id`` is not a ``str`` or ``start`` not a :class:`VectorClock`.

    Example:
        >>> alice, bob = VectorClockNode("alice"), VectorClockNode("bob")
        >>> message = alice.stamp("hello")
        >>> bob.receive_message(message).timestamp.to_dict()
        {'alice': 1, 'bob': 1}
    """

    __slots__ = ("_clock", "_lock", "node_id")

    def __init__(self, node_id: str, *, start: VectorClock | None = None) -> None:
        if not isinstance(node_id, str):
            raise TypeError(f"node_id must be a str, got {type(node_id).__name__}")
        if start is not None and not isinstance(start, VectorClock):
            raise TypeError(f"start must be a VectorClock, got {type(start).__name__}")
        self.node_id = node_id
        self._clock = start if start is not None else VectorClock()
        self._lock = threading.Lock()

    @property
    def clock(self) -> VectorClock:
        """The current clock."""
        return self._clock

    def tick(self) -> VectorClock:
        """A local or send event: increment this node's entry and return the new clock."""
        with self._lock:
            self._clock = clock = self._clock.increment(self.node_id)
        return clock

    def receive(self, remote: VectorClock) -> VectorClock:
        """A receive event: merge ``remote``, then increment this node's entry.

        Raises:
            TypeError: ``remote`` is not a :class:`VectorClock`.
        """
        if not isinstance(remote, VectorClock):
            raise TypeError(f"remote must be a VectorClock, got {type(remote).__name__}")
        with self._lock:
            self._clock = clock = self._clock.merge(remote).increment(self.node_id)
        return clock

    def stamp(self, payload: P) -> Stamped[P, VectorClock]:
        """Timestamp an outgoing message (a send event) in one call."""
        return Stamped(payload, self.tick())

    def receive_message(self, message: Stamped[P, VectorClock]) -> Stamped[P, VectorClock]:
        """Merge an incoming message's clock (a receive event) in one call.

        Returns:
            The payload with this node's clock after the receive event.

        Raises:
            TypeError: ``message`` is not a :class:`Stamped` carrying a :class:`VectorClock`.
        """
        if not isinstance(message, Stamped):
            raise TypeError(f"message must be a Stamped, got {type(message).__name__}")
        return Stamped(message.payload, self.receive(message.timestamp))

    def __repr__(self) -> str:
        return f"VectorClockNode({self.node_id!r}, clock={self._clock!r})"
