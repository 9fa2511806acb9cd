"""A consistent-hashing ring with virtual nodes, weights, and a libketama-exact mode.

Algorithm (Karger et al., "Consistent hashing and random trees", STOC 1997, with virtual nodes as
in Dynamo, DeCandia et al. 2007): every node owns ``round(vnodes * weight)`` points on a circle of
``2**32`` positions and a key goes to the node owning the point nearest to the key's hash.

Default mode (``hash="mmh3"``):

* **Key hash**: 32-bit unsigned MurmurHash3 x86_32, seed 0, of the key's UTF-8 bytes
  (``mmh3.hash(key, 0, signed=False)``). This is the space :meth:`HashRing.diff` reports
  intervals in.
* **Points**: a node's ``count`` points come from the first ``4 * count`` bytes of SHAKE-128 over
  ``b"dsprims-ring\\x00" + name_utf8``: each little-endian 32-bit word ``w`` places a point at
  ring position ``4 * (w >> 2)``. One extendable-output call per node gives all its points (fast
  builds); the name is the only input, so no two (name, index) pairs can produce the same label
  (``"a1"+"0"`` versus ``"a"+"10"`` cannot arise), and a heavier weight only *appends* points.
* **Ownership**: a point owns the cell of keys nearest to it: for consecutive points at
  ``4a`` and ``4b`` the boundary is ``2 * (a + b) + 1`` (the midpoint, rounded up by one so every
  boundary is odd), inclusive on the left side. Owning the nearest-point cell rather than the
  whole gap before the point halves the variance of each node's share, so 400 points per node keep
  the busiest of 100 equal nodes at about 1.09x the mean (tested: at most 1.15x) where the classic
  "successor" rule needs about 1,000 points per node.
* **Ties**: two nodes hashing to the same point are resolved by name: the smallest name (in code
  point order) owns it; the others' copies are kept aside and take over if it leaves.

Guarantees (default mode): placement depends only on the node names and weights, never on
insertion order, ``hash()`` salting or the Python version. Adding a node moves keys only to that
node (about ``1/(n+1)`` of them); removing it restores the previous mapping exactly; changing one
node's weight moves keys only between that node and the others. Reads take no lock: the ring is
an immutable snapshot replaced atomically by writers (copy-on-write), so a reader in another
thread always sees one complete ring, old or new.

``hash="ketama"`` follows :mod:`dsprims.hashing.ketama` exactly instead (MD5 points, relative
integer weights, float32 arithmetic, stable tie order by server-list order, successor rule); it
gives none of the minimal-disruption guarantees above beyond what libketama gives.

Failure modes: an empty ring raises :class:`EmptyRingError` on lookup. Memory is about
``12 bytes * vnodes * total weight`` plus a lookup table of up to 2 MiB; weights are multipliers
of ``vnodes``, so keep them in a small range (e.g. 0.1 to 10) rather than raw capacities such as
64000.
"""

from __future__ import annotations

import hashlib
import struct
import sys
import threading
from array import array
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat, zip_longest
from operator import add as _add
from operator import rshift as _rshift
from types import MappingProxyType
from typing import Any, Final, Literal

import mmh3

from dsprims.errors import ConfigurationError
from dsprims.hashing._common import (
    HASH_SPACE,
    EmptyRingError,
    check_node,
    check_weight,
    key_bytes,
    key_hash32,
    parse_nodes,
)
from dsprims.hashing.ketama import ketama_hash, ketama_points

__all__ = ["DEFAULT_VNODES", "HashRing", "Move"]

#: Points per node at weight 1.0 when ``vnodes=None``: keeps the busiest of 100 equal nodes at
#: about 1.09x the mean share (tested at <= 1.15x over a million keys).
DEFAULT_VNODES: Final = 400

#: Largest number of points one node may own (protects memory from a mistaken huge weight).
MAX_POINTS_PER_NODE: Final = 1 << 22

HashName = Literal["mmh3", "ketama"]

_POINT_SALT = b"dsprims-ring\x00"
_MAX_HASH = HASH_SPACE - 1
_QSPACE = 1 << 30  # point coordinates q: ring position 4 * q
_LSPACE = 1 << 31  # default-mode lookup space: hash >> 1, interval ends a + b
_TABLE_MAX_BITS = 18  # prefix table of at most 2**18 entries (2 MiB)
_MEMO_MAX = 1 << 14  # buckets of cached preference lists per snapshot (about 5 MiB at most)
_FIRST_WORD = struct.Struct("<I")
_FAST_BUILD_MAX_NODES = 1 << 16  # node ranks take two bytes in _sorted_points
_WORD_ONE = b"\x01\x00\x00\x00"
_CLEAR_LOW_BITS = bytes(b & 0xFC for b in range(256))  # a translate table: b & ~3
_BIG_ENDIAN = sys.byteorder == "big"
_mmh3_32 = mmh3.hash


@dataclass(frozen=True, slots=True)
class Move:
    """Keys whose hash lies in ``(start, end]`` change owner from ``source`` to ``target``.

    Hashes are in the ring's key-hash space (32-bit unsigned; see :meth:`HashRing.key_hash`).
    ``start`` is exclusive and may be ``-1`` for an interval that begins at hash 0.
    """

    start: int
    end: int
    source: str
    target: str

    @property
    def size(self) -> int:
        """How many hash values the interval holds."""
        return self.end - self.start

    @property
    def fraction(self) -> float:
        """The share of the key space the interval holds (0.0 to 1.0)."""
        return (self.end - self.start) / HASH_SPACE

    def contains(self, key_hash: int) -> bool:
        """Whether a key hash (from :meth:`HashRing.key_hash`) lies in the interval."""
        return self.start < key_hash <= self.end


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """One immutable state of a ring. Writers build a new one; readers never see a partial one.

    ``ends``/``owners`` are the lookup arrays: interval ``j`` is ``(ends[j-1], ends[j]]`` (with
    ``ends[-1]`` read as -1) and belongs to node ``labels[owners[j]]``; the last entry is a
    sentinel (the size of the lookup space) owned by ``owners[0]`` (the arc that wraps around
    zero). In the default mode the lookup space is ``hash >> 1`` (``2**31`` values; end ``e`` is
    hash ``2e + 1``); in ketama mode it is the 32-bit hash itself.

    Nodes are stored as small integers (ranks) indexing ``labels``, so the per-point arrays are
    compact C arrays that builds and splices fill with byte-level copies. ``labels`` may hold
    ``""`` for a rank no point uses (a removed node's, until a new node takes it).
    """

    weights: dict[str, float]
    ends: Sequence[int]
    owners: array[int]
    labels: list[str]
    # Default mode only: sorted unique point coordinates, their owners' ranks, and tied points
    # -> every node holding them, sorted. (Point i's cell ends at ``q[i] + q[i+1]`` in the
    # lookup space, which ``ends`` holds, rotated: see _lookup_arrays.)
    points: Sequence[int] = field(default_factory=list)
    names: array[int] = field(default_factory=lambda: array("H"))
    shadow: dict[int, list[str]] = field(default_factory=dict)


def _empty(weights: dict[str, float]) -> _Snapshot:
    return _Snapshot(weights, [HASH_SPACE], array("H"), [])


def _rank_code(labels: list[str]) -> str:
    """The array type code that holds every rank of ``labels``."""
    return "H" if len(labels) <= 1 << 16 else "I"


def _owner_names(snap: _Snapshot) -> list[str]:
    """The owner of every interval of ``snap.ends``, by name."""
    return list(map(snap.labels.__getitem__, snap.owners))


def node_points(name: str, count: int) -> list[int]:
    """The first ``count`` point coordinates ``q`` of a node (ring position ``4 * q``)."""
    blob = hashlib.shake_128(_POINT_SALT + name.encode()).digest(4 * count)
    # 30-bit coordinates: CPython sorts ints below 2**30 on a much faster path, and sorted runs
    # (one per node) make the ring-wide sort a cheap merge.
    return sorted(map(_rshift, struct.unpack(f"<{count}I", blob), repeat(2)))


def _point_count(name: str, weight: float, vnodes: int) -> int:
    count = max(1, round(vnodes * weight))
    if count > MAX_POINTS_PER_NODE:
        raise ConfigurationError(
            f"node {name!r} would own {count} points (vnodes * weight); "
            f"the limit is {MAX_POINTS_PER_NODE}: use smaller weights"
        )
    return count


def _lookup_arrays(bounds: Sequence[int], names: array[int]) -> tuple[array[int], array[int]]:
    """Rotate the per-point cell ends into sorted interval ends, and add the wrap sentinel."""
    last = bounds[-1]
    if last >= _LSPACE:
        ends = array("I", [last - _LSPACE])
        ends.extend(bounds)
        ends[-1] = _LSPACE
        owners = array(names.typecode, [names[-1]])
        owners += names
    else:
        ends = array("I", bounds)
        ends.append(_LSPACE)
        owners = names + array(names.typecode, [names[0]])
    return ends, owners


def _build_default(weights: dict[str, float], vnodes: int) -> _Snapshot:
    if not weights:
        return _empty(weights)
    order = sorted(weights)
    if len(order) > _FAST_BUILD_MAX_NODES:
        return _build_default_reference(weights, vnodes)
    counts = [_point_count(name, weights[name], vnodes) for name in order]
    points, names, shadow, bounds = _sorted_points(order, counts)
    ends, owners = _lookup_arrays(bounds, names)
    return _Snapshot(weights, ends, owners, order, points, names, shadow)


def _set_table_bits(size: int) -> int:
    """log2 of the hash table CPython (3.11 to 3.13) ends with after adding ``size`` distinct
    items to an empty ``set`` one by one: it grows to the power of two above ``4 * used`` (``2 *
    used`` above 50,000) whenever it is 3/5 full. Only speed depends on this being right."""
    mask = 7
    while True:
        full = -(-mask * 3 // 5)  # the fill at which the table grows
        if size < full:
            return mask.bit_length()
        mask = (1 << (full * (4 if full <= 50_000 else 2)).bit_length()) - 1


def _sorted_points(
    order: list[str], counts: list[int]
) -> tuple[array[int], array[int], dict[int, list[str]], array[int]]:
    """Every node's points, sorted, with their owners (ranks in ``order``), the tied points
    (see _find_ties) and the cell ends (see _cell_bounds).

    The same points as :func:`node_points` (pinned to :func:`_build_default_reference` by a
    differential test), computed in C-level passes over one buffer instead of per point: each
    SHAKE word ``w`` with its two low bits cleared (``4 * q``, one ``bytes.translate``) is
    packed with its node's rank into one exactly representable float
    ``((q << 18) + rank + 2**52) * 2**e``, written byte by byte, so a single float sort orders
    points and, on ties, puts the smallest name first; one big-integer shift of the sorted
    words then gives ``q``. ``order`` is sorted and has at most 65,536 names (the rank takes two
    bytes).

    Before that sort, the floats pass through a ``set``, purely for speed: a float's hash is
    its value modulo the Mersenne prime ``2**61 - 1``, i.e. its mantissa rotated by ``e``
    bits, and ``e`` is picked so that the low bits of the hash, which pick the slot in the
    set's table, are the top bits of ``q`` (:func:`_set_table_bits`). Iterating the set then
    yields the points nearly sorted, and the sort (which alone decides the order, whatever the
    set does) merely repairs neighbours: the set and the sort together take about two thirds of
    the time the sort of the shuffled points takes. The set also drops a node's repeats of its
    own point (same ``q``, same rank), which the ring drops anyway.
    """
    size = sum(counts)
    blob = b"".join(
        [
            hashlib.shake_128(_POINT_SALT + name.encode()).digest(4 * count)
            for name, count in zip(order, counts, strict=True)
        ]
    )
    ranks = b"".join([rank.to_bytes(2, "little") * count for rank, count in enumerate(counts)])
    # Mantissa bits 18 + 30 - b .. 47 hold the top b bits of q; rotating them to bits 0 .. b - 1
    # of the hash takes e = 61 - (48 - b) (mod 61). The biased exponent 1023 + 52 + e goes in
    # bits 52..62 of each little-endian double.
    bits = _set_table_bits(size)
    exponent = (1075 + (13 + bits) % 61) << 4
    packed = bytearray((b"\x00" * 6 + exponent.to_bytes(2, "little")) * size)
    packed[0::8] = ranks[0::2]
    packed[1::8] = ranks[1::2]
    packed[2::8] = blob[0::4].translate(_CLEAR_LOW_BITS)  # 4 * q = w & ~3
    for j in range(1, 4):
        packed[2 + j :: 8] = blob[j::4]
    floats = list(set(_native(array("d", packed))))
    floats.sort()
    size = len(floats)
    ordered = struct.pack(f"<{size}d", *floats)  # little-endian, like packed
    del floats
    sorted_4q = bytearray(4 * size)
    for j in range(4):
        sorted_4q[j::4] = ordered[2 + j :: 8]
    rank_bytes = bytearray(2 * size)
    rank_bytes[0::2] = ordered[0::8]
    rank_bytes[1::2] = ordered[1::8]
    names = _native(array("H", rank_bytes))
    # The words' two low bits are zero, so one shift of the whole buffer divides each by 4.
    value = int.from_bytes(sorted_4q, "little") >> 2
    points = _native(array("I", value.to_bytes(4 * size, "little")))
    # Each point's cell end q[i] + q[i+1] in one big-integer addition (words are below 2**30,
    # so sums never carry into the next word).
    after = value >> 32
    bounds = _native(array("I", (value + after).to_bytes(4 * size, "little")))
    bounds[-1] = points[-1] + points[0] + _QSPACE
    repeats = _repeats(value ^ after, points)
    if not repeats:
        return points, names, {}, bounds
    shadow = _dedupe(points, names, order, repeats)
    return points, names, shadow, _cell_bounds(points)


def _repeats(neighbours: int, points: array[int]) -> list[int]:
    """The indices ``i`` with ``points[i] == points[i - 1]``, given the XOR of every 32-bit
    word of ``points`` with the next (the last word with zero): C-level passes except over
    the few candidates. For words below ``2**30``, ``x - 1`` sets bit 31 of a word when the
    word is zero, and (through the borrow) when it is 1 and the word below it is zero; the
    candidates are checked exactly."""
    size = len(points)
    if size < 2:
        return []
    ones = int.from_bytes(_WORD_ONE * size, "little")  # 1 in every 32-bit word
    neighbours |= 1 << (32 * (size - 1))  # the last word has no next one
    flags = (neighbours - ones) & (ones << 31)
    if not flags:
        return []
    marks = flags.to_bytes(4 * size, "little")
    found: list[int] = []
    at = marks.find(0x80)
    while at >= 0:
        i = at >> 2
        if points[i] == points[i + 1]:
            found.append(i + 1)
        at = marks.find(0x80, at + 1)
    return found


def _dedupe(
    points: array[int], names: array[int], labels: list[str], repeats: list[int]
) -> dict[int, list[str]]:
    """Drop the repeated points at indices ``repeats`` (ascending) in place: the first copy,
    the smallest name, stays. Return the tied points with all their holders, sorted (about
    half of all 100-node rings at 400 points per node have one or two)."""
    shadow: dict[int, list[str]] = {}
    for i in repeats:
        holders = shadow.setdefault(points[i], [labels[names[i - 1]]])
        if labels[names[i]] != holders[-1]:  # one node can repeat its own point
            holders.append(labels[names[i]])
    for i in reversed(repeats):
        del points[i]
        del names[i]
    return {q: holders for q, holders in shadow.items() if len(holders) > 1}


def _cell_bounds(points: array[int]) -> array[int]:
    """Each point's cell end ``q[i] + q[i+1]`` (wrapping for the last), in one big-integer
    addition: words are below 2**30, so their sums never carry into the next word."""
    size = len(points)
    value = int.from_bytes(_native(array("I", points)).tobytes(), "little")  # a copy
    sums = (value + (value >> 32)).to_bytes(4 * size, "little")
    bounds = _native(array("I", sums))
    bounds[-1] = points[-1] + points[0] + _QSPACE
    return bounds


def _native(values: array[Any]) -> array[Any]:
    """Little-endian buffers <-> native arrays (a no-op on little-endian machines)."""
    if _BIG_ENDIAN:
        values.byteswap()
    return values


def _build_default_reference(weights: dict[str, float], vnodes: int) -> _Snapshot:
    """The per-point build: the reference for :func:`_build_default` (and its path for rings
    of more than 65,536 nodes)."""
    if not weights:
        return _empty(weights)
    owner_of: dict[int, str] = {}
    node_pts: list[tuple[str, list[int]]] = []
    total = 0
    # Highest name first, so the smallest name is written last and wins a tied point.
    for name in sorted(weights, reverse=True):
        pts = node_points(name, _point_count(name, weights[name], vnodes))
        node_pts.append((name, pts))
        total += len(pts)
        owner_of.update(zip(pts, repeat(name)))
    shadow = _find_ties(node_pts) if len(owner_of) < total else {}
    points = array("I", sorted(owner_of))
    labels = sorted(weights)
    rank = {name: i for i, name in enumerate(labels)}
    names = array(_rank_code(labels), [rank[owner_of[q]] for q in points])
    # A C-level pass (the build is dominated by per-point work): cell end = q[i] + q[i+1].
    bounds = array("I", map(_add, points, points[1:]))
    bounds.append(points[-1] + points[0] + _QSPACE)
    ends, owners = _lookup_arrays(bounds, names)
    return _Snapshot(weights, ends, owners, labels, points, names, shadow)


def _find_ties(node_pts: list[tuple[str, list[int]]]) -> dict[int, list[str]]:
    """Points held by two or more nodes -> their holders, sorted (about half of all rings of
    40,000 points have one or two)."""
    holders: dict[int, list[str]] = {}
    seen: dict[int, str] = {}
    for name, pts in node_pts:
        for p in set(pts):
            first = seen.setdefault(p, name)
            if first != name:
                holders.setdefault(p, [first]).append(name)
    for names in holders.values():
        names.sort()
    return holders


def _splice(runs: Iterable[Any], singles: Iterable[Any] = (), out: Any = None) -> Any:
    """Append ``runs[0], singles[0], runs[1], singles[1], ...`` (then the rest of ``runs``)
    to ``out`` in C-level passes: one ``extend`` per piece, no per-item Python code."""
    if out is None:
        out = []
    deque(map(out.extend, chain.from_iterable(zip_longest(runs, singles, fillvalue=()))), 0)
    return out


def _respliced(
    snap: _Snapshot,
    points: array[int],
    names: array[int],
    starts: list[int],
    stops: list[int],
    added: int | None,
    dirty: Iterable[int],
) -> tuple[array[int], array[int], array[int]]:
    """``(ends, owners, names)`` of a spliced ring, spliced straight from the old ones.

    ``points`` is the new ring; the old one is cut into runs ``[starts[k], stops[k])``, each
    followed by one point of ``added`` when a node is being added. The interval ends are the
    old cell ends (``snap.ends`` holds cell end ``i`` at index ``i + 1`` when the last cell
    wraps past zero, else at ``i``) with the cells of ``dirty`` points and of the last point
    recomputed, rotated into :func:`_lookup_arrays`' layout without another copy.
    """
    old = snap.points
    shift = 1 if old[-1] + old[0] + _QSPACE >= _LSPACE else 0
    count = len(starts) - 1 if added is not None else 0
    cells = map(
        snap.ends.__getitem__, map(slice, [a + shift for a in starts], [b + shift for b in stops])
    )
    ends = _splice(cells, repeat((0,), count), array("I", [0]))  # cell end i at index i + 1
    owners = _splice(
        map(names.__getitem__, map(slice, starts, stops)),
        repeat((added,), count),
        array(names.typecode, [added or 0]),  # a placeholder, replaced below
    )
    last = len(points) - 1
    for i in {*dirty, last}:
        ends[i + 1] = points[i] + (points[i + 1] if i < last else points[0] + _QSPACE)
    wrap = ends[-1]
    if wrap >= _LSPACE:
        ends[0] = wrap - _LSPACE
        ends[-1] = _LSPACE
        owners[0] = owners[-1]
        new_names = owners[1:]
    else:
        del ends[0]
        ends.append(_LSPACE)
        del owners[0]
        owners.append(owners[0])
        new_names = owners[:-1]
    return ends, owners, new_names


def _add_default(snap: _Snapshot, name: str, weight: float, vnodes: int) -> _Snapshot:
    """Copy-on-write insertion of one node that is not on the ring yet."""
    weights = {**snap.weights, name: weight}
    if not snap.points:
        return _build_default(weights, vnodes)
    # The new node takes the first unused rank (a removed node's), else the next one.
    labels = list(snap.labels)
    try:
        rank = labels.index("")
        labels[rank] = name
    except ValueError:
        rank = len(labels)
        labels.append(name)
        if _rank_code(labels) != snap.names.typecode:
            return _build_default(weights, vnodes)  # ranks outgrow two bytes: start afresh
    old_points, old_names = snap.points, snap.names
    shadow = {p: list(v) for p, v in snap.shadow.items()}
    size = len(old_points)
    new = sorted(set(node_points(name, _point_count(name, weight, vnodes))))
    where = list(map(bisect_left, repeat(old_points, len(new)), new))
    replaced: dict[int, int] = {}
    shared = [i for i, pos in enumerate(where) if pos < size and old_points[pos] == new[i]]
    for i in shared:  # points this node shares with one already on the ring (rare)
        pos = where[i]
        holders = shadow.setdefault(new[i], [labels[old_names[pos]]])
        holders.append(name)
        holders.sort()
        if holders[0] == name:
            replaced[pos] = rank
    for i in reversed(shared):
        del new[i]
        del where[i]
    names = old_names
    if replaced:
        names = array(old_names.typecode, old_names)
        for pos, owner in replaced.items():
            names[pos] = owner
    # Old runs between insertion points, each followed by one new point: new point i lands
    # at index where[i] + i.
    starts, stops = [0, *where], [*where, size]
    points = _splice(map(old_points.__getitem__, map(slice, starts, stops)), zip(new), array("I"))
    last = len(points) - 1
    dirty = {j for i, pos in enumerate(where) for j in (pos + i - 1 if pos else last, pos + i)}
    ends, owners, new_names = _respliced(snap, points, names, starts, stops, rank, dirty)
    return _Snapshot(weights, ends, owners, labels, points, new_names, shadow)


def _remove_default(snap: _Snapshot, name: str, vnodes: int) -> _Snapshot:
    """Copy-on-write removal of one node that is on the ring."""
    weights = {n: w for n, w in snap.weights.items() if n != name}
    if not weights:
        return _build_default(weights, vnodes)
    # The node's rank falls unused (trailing unused ranks are dropped).
    labels = list(snap.labels)
    rank = labels.index(name)
    labels[rank] = ""
    while not labels[-1]:
        labels.pop()
    old_points, old_names = snap.points, snap.names
    shadow = {p: list(v) for p, v in snap.shadow.items()}
    gone = sorted(set(node_points(name, _point_count(name, snap.weights[name], vnodes))))
    where = list(map(bisect_left, repeat(old_points, len(gone)), gone))
    deletes: list[int] = where
    replaced: dict[int, int] = {}
    if shadow:
        deletes = []
        for q, pos in zip(gone, where, strict=True):
            holders = shadow.get(q)
            if holders is not None:
                holders.remove(name)
                if old_names[pos] == rank:
                    replaced[pos] = labels.index(holders[0])
                if len(holders) == 1:
                    del shadow[q]
            else:
                deletes.append(pos)
    names = old_names
    if replaced:
        names = array(old_names.typecode, old_names)
        for pos, owner in replaced.items():
            names[pos] = owner
    size = len(old_points)
    starts, stops = [0, *[pos + 1 for pos in deletes]], [*deletes, size]
    points = _splice(map(old_points.__getitem__, map(slice, starts, stops)), (), array("I"))
    # The point before each deleted one (new index pos - i - 1) faces a new neighbour.
    last = len(points) - 1
    dirty = {pos - i - 1 if pos > i else last for i, pos in enumerate(deletes)}
    ends, owners, new_names = _respliced(snap, points, names, starts, stops, None, dirty)
    return _Snapshot(weights, ends, owners, labels, points, new_names, shadow)


def _build_ketama(weights: dict[str, float]) -> _Snapshot:
    if not weights:
        return _empty(weights)
    entries = ketama_points(weights)
    labels = list(weights)
    rank = {name: i for i, name in enumerate(labels)}
    ends = [p for p, _ in entries]
    owners = array(_rank_code(labels), [rank[n] for _, n in entries])
    ends.append(HASH_SPACE)
    owners.append(owners[0])
    return _Snapshot(weights, ends, owners, labels)


def _walk(
    points: Sequence[int], names: Sequence[int], labels: list[str], want: int, h: int
) -> tuple[int, int, tuple[str, ...]]:
    """The preference list of hash ``h``: distinct owners of points in order of distance
    (``names`` holds each point's owner as a rank in ``labels``).

    Returns ``(start, end, prefs)``: every hash in ``[start, end)`` (which holds ``h``) gets the
    same list, because it starts the walk in the same gap between two points and every
    comparison the walk made comes out the same.
    """
    size = len(points)
    qspace = _QSPACE
    right = bisect_left(points, (h + 3) >> 2)
    # The gap: bisect_left(points, (h + 3) >> 2) == right for h in [start, end).
    start = 4 * points[right - 1] + 1 if right else 0
    end = 4 * points[right] + 1 if right < size else HASH_SPACE
    # Walk outward, nearest point first: between points at 4a (left) and 4b (right) the key
    # goes left when h <= 2 * (a + b) + 1, i.e. (h - 1) >> 1 <= a + b.
    half = (h - 1) >> 1
    left = right - 1
    found: list[int] = []
    for _ in range(size):
        a = points[left] if left >= 0 else points[left] - qspace
        b = points[right] if right < size else points[right - size] + qspace
        threshold = a + b
        if half <= threshold:
            # Still left for every h with (h - 1) >> 1 <= threshold, i.e. h < 2 * threshold + 3.
            end = min(end, 2 * threshold + 3)
            owner = names[left]
            left -= 1
        else:
            start = max(start, 2 * threshold + 3)
            owner = names[right if right < size else right - size]
            right += 1
        if owner not in found:
            found.append(owner)
            if len(found) == want:
                break
    return start, end, tuple(map(labels.__getitem__, found))


def _make_get_nodes(snap: _Snapshot) -> Callable[[str | bytes, int], list[str]]:
    """The default-mode preference-list closure over one snapshot (see :meth:`get_nodes`).

    Answers for ``n <= 8`` are cached per bucket of the hash space (filled on first use, at
    most :data:`_MEMO_MAX` buckets per snapshot): a bucket holds either the one list every hash
    in it gets, or the few ``[cuts, lists]`` segments :func:`_walk` splits it into, found with
    one bisect. A hit is one list index (plus that bisect) and a copy, like :meth:`get_node`.
    """
    points, names, labels = snap.points, snap.names, snap.labels
    size, count = len(points), len(snap.weights)
    murmur, slow_hash, walk = _mmh3_32, key_hash32, _walk
    bits = min(_TABLE_MAX_BITS, max(6, size.bit_length() + 1))
    bshift = 32 - bits
    span = 1 << bshift
    # tables[n]: bucket -> tuple | [cuts, tuples] | None, allocated on first use for each n.
    # Racing threads write equal values, or allocate a table twice and lose a few entries.
    tables: list[list[Any]] = [[] for _ in range(9)]
    filled = [0]

    def fill(h: int, n: int, key: str | bytes) -> list[str]:
        if not size:
            _empty_lookup(key)
        want = n if n < count else count
        if n > 8 or filled[0] >= _MEMO_MAX:
            return list(walk(points, names, labels, want, h)[2])
        table = tables[n]
        if not table:
            table = tables[n] = [None] * (1 << bits)
        bucket = h >> bshift
        low = bucket << bshift
        high = low + span
        _, end, prefs = walk(points, names, labels, want, low)
        entry: Any = prefs
        if end < high:
            cuts: list[int] = []
            lists = [prefs]
            while end < high:
                cuts.append(end)
                _, end, prefs = walk(points, names, labels, want, end)
                lists.append(prefs)
            entry = [tuple(cuts), tuple(lists)]
        table[bucket] = entry
        filled[0] += 1
        if entry.__class__ is tuple:
            return list(entry)
        return list(entry[1][bisect_right(entry[0], h)])

    def get_nodes(key: str | bytes, n: int) -> list[str]:
        if n.__class__ is not int or n < 1:
            _check_n(n)
        try:
            h = murmur(key, 0, False) if key.isascii() else slow_hash(key)
        except (AttributeError, TypeError):
            raise _key_error(key) from None
        try:
            hit = tables[n][h >> bshift]
        except IndexError:  # n > 8, or this n's table is not allocated yet
            return fill(h, n, key)
        if hit.__class__ is tuple:
            return list(hit)
        if hit is None:
            return fill(h, n, key)
        return list(hit[1][bisect_right(hit[0], h)])

    return get_nodes


def _check_n(n: object) -> None:
    if n.__class__ is not int:
        raise TypeError(f"n must be an int, not {type(n).__name__}")
    raise ValueError(f"n must be >= 1, got {n}")


def _key_error(key: object) -> TypeError:
    return TypeError(f"key must be str or bytes, not {type(key).__name__}")


def _empty_lookup(key: object) -> str:
    key_bytes(key)  # type errors first, so bad keys fail the same way on every ring
    raise EmptyRingError("the ring has no nodes: add_node() before looking keys up")


def _make_get_ketama(
    ends: Sequence[int], owners: Sequence[int], labels: list[str]
) -> Callable[[str | bytes], str]:
    """The ketama-mode lookup closure: MD5 key hash, then the same lazily filled prefix table
    as the default mode (here over the 32-bit hash itself)."""
    md5, first_word, bisect = hashlib.md5, _FIRST_WORD.unpack_from, bisect_left
    bits = min(_TABLE_MAX_BITS, max(8, len(ends).bit_length() + 4))
    table: list[str | None] = [None] * (1 << bits)
    tshift = 32 - bits
    span = 1 << tshift

    def get_ketama(key: str | bytes) -> str:
        if isinstance(key, str):
            data = key.encode()
        elif isinstance(key, bytes):
            data = key
        else:
            raise _key_error(key)
        h: int = first_word(md5(data, usedforsecurity=False).digest())[0]
        owner = table[h >> tshift]
        if owner is not None:
            return owner
        i = bisect(ends, h)
        owner = labels[owners[i]]
        lo = h & ~(span - 1)
        if ends[i] >= lo + span - 1 and (i == 0 or ends[i - 1] < lo):
            table[h >> tshift] = owner
        return owner

    return get_ketama


def _make_get_node(snap: _Snapshot, ketama: bool) -> Callable[[str | bytes], str]:
    """A lookup closure over one snapshot: the hot path binds everything it touches locally."""
    ends, owners, labels = snap.ends, snap.owners, snap.labels
    if not owners:
        return _empty_lookup
    if ketama:
        return _make_get_ketama(ends, owners, labels)
    bisect, murmur, slow_hash = bisect_left, _mmh3_32, key_hash32
    # Prefix table: bucket b holds hashes [b << tshift, (b + 1) << tshift). A bucket that lies
    # inside one interval caches its owner, filled on first use (a benign race: every thread
    # writes the same value into this snapshot's private table), so most lookups skip the
    # binary search.
    bits = min(_TABLE_MAX_BITS, max(8, len(ends).bit_length() + 4))
    tshift = 32 - bits
    bucket_span = 1 << (tshift - 1)  # in the lookup space (hash >> 1)
    # Allocated by the first lookup (a ring that changes before anyone reads it never pays for
    # it); until then every index raises IndexError. Threads racing there may each allocate
    # one: the closure keeps the last, and a lost table only loses cached entries.
    table: list[str | None] = []

    def miss(h: int) -> str:
        nonlocal table
        if not table:
            table = [None] * (1 << bits)
        i = bisect(ends, h >> 1)
        owner = labels[owners[i]]
        lo = (h >> tshift) * bucket_span
        if ends[i] >= lo + bucket_span - 1 and (i == 0 or ends[i - 1] < lo):
            table[h >> tshift] = owner
        return owner

    def get_node(key: str | bytes) -> str:
        try:
            # isascii() is O(1) on str; non-ASCII str goes through key_hash32, which encodes
            # first (mmh3 crashes on lone surrogates). Other types fail here with TypeError.
            if key.isascii():
                h = murmur(key, 0, False)
                owner = table[h >> tshift]
                if owner is not None:
                    return owner
                return miss(h)
        except (AttributeError, TypeError):
            raise _key_error(key) from None
        except IndexError:  # the table is not allocated yet
            return miss(h)
        return miss(slow_hash(key))

    return get_node


class HashRing:
    """A consistent-hashing ring of named nodes with virtual nodes and weights.

    Args:
        nodes: node names, or a mapping name -> weight (a positive finite number; a weight of 2
            owns twice the points, hence about twice the keys, of a weight of 1).
        vnodes: points per node at weight 1.0; ``None`` picks :data:`DEFAULT_VNODES` (400).
        hash: ``"mmh3"`` (default, see the module docstring) or ``"ketama"`` (byte-exact
            libketama; weights must be whole numbers and ``vnodes`` must be ``None``).

    Raises:
        ConfigurationError: a weight <= 0, NaN or infinite, ``vnodes < 1``, an empty or
            duplicate node name, or an unknown ``hash``.
        TypeError: a node name that is not ``str``, or a weight that is not a number.

    Lookups (:meth:`get_node`, :meth:`get_nodes`) take no lock and may run in any number of
    threads while another thread adds or removes nodes. Writers are serialised by a lock.
    """

    def __init__(
        self,
        nodes: Iterable[str] | Mapping[str, float] = (),
        *,
        vnodes: int | None = None,
        hash: HashName = "mmh3",
    ) -> None:
        if hash not in ("mmh3", "ketama"):
            raise ConfigurationError(f"hash must be 'mmh3' or 'ketama', got {hash!r}")
        if vnodes is not None:
            if isinstance(vnodes, bool) or not isinstance(vnodes, int):
                raise TypeError(f"vnodes must be an int or None, not {type(vnodes).__name__}")
            if vnodes < 1:
                raise ConfigurationError(f"vnodes must be >= 1, got {vnodes}")
            if hash == "ketama":
                raise ConfigurationError(
                    "vnodes must be None with hash='ketama' (libketama uses 160 points per "
                    "server at equal weight)"
                )
        self._hash: HashName = hash
        self._shift = 0 if hash == "ketama" else 1
        self._vnodes = DEFAULT_VNODES if vnodes is None else vnodes
        self._write_lock = threading.Lock()
        weights = parse_nodes(nodes)
        self._install(self._build(weights))

    # -- snapshots ---------------------------------------------------------------------------

    def _build(self, weights: dict[str, float]) -> _Snapshot:
        if self._hash == "ketama":
            return _build_ketama(weights)
        return _build_default(weights, self._vnodes)

    def _install(self, snap: _Snapshot) -> None:
        # One attribute store each: a reader sees the old or the new snapshot, never a mix. The
        # lookup closure shadows the class method through the instance dict (no bound-method
        # object and no attribute chase per call).
        self._snap = snap
        self.__dict__["get_node"] = _make_get_node(snap, self._hash == "ketama")
        if self._hash != "ketama":
            self.__dict__["get_nodes"] = _make_get_nodes(snap)

    # -- lookups -----------------------------------------------------------------------------

    def get_node(self, key: str | bytes) -> str:
        """The node that owns ``key``.

        Raises:
            TypeError: the key is neither ``str`` nor ``bytes``.
            EmptyRingError: the ring has no nodes (also a ``LookupError``).
        """
        # Replaced per instance by a closure over the current snapshot (see _install); this body
        # documents it and serves subclasses that bypass __init__.
        return _make_get_node(self._snap, self._hash == "ketama")(key)

    def key_hash(self, key: str | bytes) -> int:
        """The hash of ``key`` in this ring's key space (the space :meth:`diff` reports in).

        32-bit unsigned MurmurHash3 (seed 0) of the UTF-8 bytes by default; with
        ``hash="ketama"``, libketama's MD5-based key hash.
        """
        if self._hash == "ketama":
            return ketama_hash(key_bytes(key))
        return key_hash32(key)

    def locate(self, key: str | bytes) -> tuple[int, int, str]:
        """``(key_hash, interval_end, node)``: where ``key`` lands on the ring.

        ``interval_end`` is the inclusive upper end of the owning interval; with
        ``hash="ketama"`` it is the libketama point the key maps to.
        """
        snap = self._snap
        if not snap.owners:
            return (self.key_hash(key), 0, _empty_lookup(key))
        h = self.key_hash(key)
        i = bisect_left(snap.ends, h >> self._shift)
        if i == len(snap.ends) - 1:
            i = 0
        return h, self._hash_of(snap.ends[i]), snap.labels[snap.owners[i]]

    def _hash_of(self, end: int) -> int:
        """Lookup-space interval end -> inclusive 32-bit key-hash end."""
        if self._shift:
            return min((end << 1) | 1, _MAX_HASH)
        return min(end, _MAX_HASH)

    def get_nodes(self, key: str | bytes, n: int) -> list[str]:
        """The preference list: up to ``n`` distinct nodes for ``key`` (Dynamo-style replicas).

        The first entry equals :meth:`get_node`. In the default mode the walk visits points in
        order of distance from the key's hash, so entry ``i`` is exactly the node that would own
        the key if entries ``0..i-1`` left the ring: replicas sit where the key fails over to.
        With ``hash="ketama"`` the walk goes clockwise (libketama's successor rule, with the same
        failover property). When the ring has fewer than ``n`` nodes, every node is returned.

        Raises:
            ValueError: ``n < 1``.
            TypeError: the key is neither ``str`` nor ``bytes`` (or ``n`` is not an int).
            EmptyRingError: the ring has no nodes.
        """
        # Replaced per instance by a closure in the default mode (see _install).
        snap = self._snap
        if self._shift:
            return _make_get_nodes(snap)(key, n)
        if n.__class__ is not int or n < 1:
            _check_n(n)
        if not snap.owners:
            _empty_lookup(key)
        want = min(n, len(snap.weights))
        owners = snap.owners
        start = bisect_left(snap.ends, ketama_hash(key_bytes(key)))
        found = [owners[start]]
        size = len(owners) - 1  # without the sentinel
        i = start
        while len(found) < want:
            i += 1
            if i >= size:
                i = 0
            if owners[i] not in found:
                found.append(owners[i])
        return list(map(snap.labels.__getitem__, found))

    # -- membership --------------------------------------------------------------------------

    def add_node(self, name: str, weight: float = 1.0) -> None:
        """Add a node, or change the weight of a node already on the ring.

        Raises:
            ConfigurationError: a weight <= 0, NaN or infinite, or an empty name.
            TypeError: a name that is not ``str`` or a weight that is not a number.
        """
        check_node(name)
        value = check_weight(weight)
        with self._write_lock:
            snap = self._snap
            old = snap.weights.get(name)
            if old == value:
                return
            if self._hash == "ketama":
                self._install(_build_ketama({**snap.weights, name: value}))
                return
            if old is not None:
                snap = _remove_default(snap, name, self._vnodes)
            self._install(_add_default(snap, name, value, self._vnodes))

    def remove_node(self, name: str) -> None:
        """Remove a node; its keys go back to where they were before it was added.

        Raises:
            KeyError: the node is not on the ring.
        """
        with self._write_lock:
            snap = self._snap
            if name not in snap.weights:
                raise KeyError(name)
            if self._hash == "ketama":
                rest = {n: w for n, w in snap.weights.items() if n != name}
                self._install(_build_ketama(rest))
                return
            self._install(_remove_default(snap, name, self._vnodes))

    @property
    def nodes(self) -> Mapping[str, float]:
        """A read-only view of node name -> weight."""
        return MappingProxyType(self._snap.weights)

    @property
    def vnodes(self) -> int:
        """Points per node at weight 1.0 (160 in ketama mode)."""
        return 160 if self._hash == "ketama" else self._vnodes

    @property
    def hash(self) -> HashName:
        """The ring's hash mode: ``"mmh3"`` or ``"ketama"``."""
        return self._hash

    def __len__(self) -> int:
        return len(self._snap.weights)

    def __contains__(self, name: object) -> bool:
        return name in self._snap.weights

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._snap.weights))

    def __repr__(self) -> str:
        return f"HashRing({dict(self._snap.weights)!r}, vnodes={self._vnodes}, hash={self._hash!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (dict(self._snap.weights), self._vnodes, self._hash))

    def copy(self) -> HashRing:
        """An independent ring with the same nodes, weights and settings."""
        clone = HashRing.__new__(HashRing)
        clone._hash = self._hash
        clone._shift = self._shift
        clone._vnodes = self._vnodes
        clone._write_lock = threading.Lock()
        clone._install(self._snap)  # snapshots are immutable, so sharing one is safe
        return clone

    # -- analysis ----------------------------------------------------------------------------

    def shares(self) -> dict[str, float]:
        """The exact fraction of the key-hash space each node owns (sums to 1.0)."""
        snap = self._snap
        out = dict.fromkeys(snap.weights, 0.0)
        prev = -1
        for end, owner in zip(snap.ends, _owner_names(snap), strict=True):
            top = self._hash_of(end)
            if top > prev:
                out[owner] += (top - prev) / HASH_SPACE
                prev = top
        return out

    def intervals(self) -> list[tuple[int, int, str]]:
        """Every ``(start, end, node)`` interval ``(start, end]`` of the key space, in order."""
        snap = self._snap
        out: list[tuple[int, int, str]] = []
        prev = -1
        for end, owner in zip(snap.ends, _owner_names(snap), strict=True):
            top = self._hash_of(end)
            if top > prev:
                if out and out[-1][2] == owner and out[-1][1] == prev:
                    out[-1] = (out[-1][0], top, owner)
                else:
                    out.append((prev, top, owner))
                prev = top
        return out

    def diff(self, other: HashRing) -> list[Move]:
        """The hash intervals whose owner differs between this ring and ``other``.

        Each :class:`Move` says keys hashing into ``(start, end]`` belong to ``source`` here and
        to ``target`` in ``other``: a rebalancing plan to run before switching rings. Adjacent
        intervals with the same source and target are merged; the list is sorted by ``start``.

        Raises:
            ValueError: the rings use different hash modes (their key spaces differ).
            EmptyRingError: either ring has no nodes.
        """
        if other.hash != self._hash:
            raise ValueError(f"cannot diff a {self._hash!r} ring with a {other.hash!r} ring")
        a, b = self._snap, other._snap
        if not a.owners or not b.owners:
            raise EmptyRingError("cannot diff an empty ring")
        moves = _diff(a.ends, _owner_names(a), b.ends, _owner_names(b))
        return [
            Move(self._hash_of(m.start), self._hash_of(m.end), m.source, m.target) for m in moves
        ]


def _diff(
    ends_a: Sequence[int], owners_a: list[str], ends_b: Sequence[int], owners_b: list[str]
) -> list[Move]:
    """Merge two rings' interval ends (in the same lookup space); report owner changes."""
    moves: list[Move] = []
    i = j = 0
    prev = -1
    last_end = ends_a[-1]  # both sentinels are the size of the lookup space
    while prev < last_end:
        ea, eb = ends_a[i], ends_b[j]
        end = min(ea, eb)
        if end > prev:
            src, dst = owners_a[i], owners_b[j]
            if src != dst:
                last = moves[-1] if moves else None
                if (
                    last is not None
                    and last.end == prev
                    and last.source == src
                    and last.target == dst
                ):
                    moves[-1] = Move(last.start, end, src, dst)
                else:
                    moves.append(Move(prev, end, src, dst))
            prev = end
        if ea <= eb:
            i += 1
        if eb <= ea:
            j += 1
    return moves


def _restore(weights: dict[str, float], vnodes: int, hash: HashName) -> HashRing:
    return HashRing(weights, vnodes=None if hash == "ketama" else vnodes, hash=hash)
