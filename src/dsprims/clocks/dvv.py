"""Dotted version vector sets: sibling detection for replicated values.

Implements the DVVSet of Almeida, Baquero, Gonçalves, Preguiça and Fonte, *Scalable and Accurate
Causality Tracking for Eventually Consistent Stores* (DAIS 2014), which builds on the dotted
version vectors of Preguiça, Baquero, Almeida, Fonte and Gonçalves (2010); Riak uses the same
structure (``dvvset``). One DVVSet holds every concurrent value ("sibling") of one key, each
tagged with a *dot* ``(node, n)``: the n-th write coordinated by that node.

How a store uses it::

    read:   values, context = state.values, state.context()
    write:  state = state.put(new_value, context, node_id)  # the client's context from its read
    sync:   state = state.merge(replica_state)              # anti-entropy between replicas

Guarantees:

* A write made with a context that covers a value's dot discards that value; a write made with
  an older context keeps it as a sibling. So concurrent writes are never lost and obsolete
  values never come back: exact sibling detection with one counter per *coordinating node*
  (servers, not clients), unlike version vectors per client id, which grow without bound, or
  per server, which produce false conflicts.
* :meth:`DVVSet.merge` is commutative, associative and idempotent (a join of states).

Failure modes:

* A node id must coordinate writes from one place at a time; two coordinators sharing an id can
  hand out the same dot and one write then replaces the other.
* A client that writes without a context (``context=None``) creates a sibling of everything.

Representation: a tuple of ``(node, n, values)`` entries sorted by node, where ``values`` holds
the live values of the dots ``n, n - 1, ...`` (newest first); dots at or below
``n - len(values)`` are known and obsolete. Values without a dot (only in a state created by
:meth:`DVVSet.new` and not yet :meth:`DVVSet.update`-d) are kept apart as *anonymous*.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from dsprims.clocks.vector import VectorClock

__all__ = ["DVVSet"]

V = TypeVar("V")

_Entry = tuple[str, int, tuple[V, ...]]


def _dedupe(values: Iterable[V]) -> tuple[V, ...]:
    # Values need not be hashable: keep the first of each equal group, in order.
    out: list[V] = []
    for value in values:
        if value not in out:
            out.append(value)
    return tuple(out)


def _merge_entry(node: str, n1: int, l1: tuple[V, ...], n2: int, l2: tuple[V, ...]) -> _Entry[V]:
    # A dot is live in the result if it is live on one side and not known-obsolete on the
    # other: the live range of the larger counter starts above both obsolete prefixes.
    if n1 >= n2:
        if n1 - len(l1) >= n2 - len(l2):
            return (node, n1, l1)
        return (node, n1, l1[: n1 - n2 + len(l2)])
    if n2 - len(l2) >= n1 - len(l1):
        return (node, n2, l2)
    return (node, n2, l2[: n2 - n1 + len(l1)])


def _merge_entries(a: tuple[_Entry[V], ...], b: tuple[_Entry[V], ...]) -> tuple[_Entry[V], ...]:
    out: list[_Entry[V]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        node_a, node_b = a[i][0], b[j][0]
        if node_a == node_b:
            out.append(_merge_entry(node_a, a[i][1], a[i][2], b[j][1], b[j][2]))
            i += 1
            j += 1
        elif node_a < node_b:
            out.append(a[i])
            i += 1
        else:
            out.append(b[j])
            j += 1
    out.extend(a[i:])
    out.extend(b[j:])
    return tuple(out)


def _dominates(a: tuple[_Entry[V], ...], b: tuple[_Entry[V], ...]) -> bool:
    """Every counter of ``a`` >= ``b``'s and at least one greater (as version vectors)."""
    counters_a = {node: n for node, n, _ in a}
    strict = False
    for node, n, _ in b:
        mine = counters_a.pop(node, 0)
        if mine < n:
            return False
        if mine > n:
            strict = True
    return strict or any(n > 0 for n in counters_a.values())


class DVVSet(Generic[V]):
    """An immutable dotted version vector set: the siblings of one key and their causality.

    Build states with :meth:`DVVSet.new` / :meth:`put` / :meth:`merge`; the constructor makes
    the empty state.

    Example:
        >>> empty = DVVSet()
        >>> s1 = empty.put("v1", None, "A")  # first write, no context
        >>> context = s1.context()  # what a reader gets along with the values
        >>> s2 = s1.put("v2", context, "A")  # overwrites v1
        >>> s3 = s2.put("v3", context, "A")  # same stale context: v3 is a sibling of v2
        >>> sorted(s3.values)
        ['v2', 'v3']
        >>> s3.put("v4", s3.context(), "A").values  # a write that saw both resolves them
        ['v4']
    """

    __slots__ = ("_anonymous", "_entries")

    def __init__(self) -> None:
        self._entries: tuple[_Entry[V], ...] = ()
        self._anonymous: tuple[V, ...] = ()

    @classmethod
    def _of(cls, entries: tuple[_Entry[V], ...], anonymous: tuple[V, ...]) -> DVVSet[V]:
        state: DVVSet[V] = cls.__new__(cls)
        state._entries = entries
        state._anonymous = anonymous
        return state

    @classmethod
    def new(cls, value: V, context: VectorClock | None = None) -> DVVSet[V]:
        """A client's write before a node has given it a dot (dvvset ``new/1``, ``new/2``).

        Args:
            value: the value written.
            context: the causal context the client read (:meth:`context`), or ``None``.

        Raises:
            TypeError: ``context`` is not a :class:`VectorClock`.
        """
        if context is None:
            return cls._of((), (value,))
        if not isinstance(context, VectorClock):
            raise TypeError(f"context must be a VectorClock, got {type(context).__name__}")
        entries = tuple((node, n, ()) for node, n in context.items())
        return cls._of(entries, (value,))

    # -- reading -------------------------------------------------------------------------------

    @property
    def values(self) -> list[V]:
        """The live values: one when there is no conflict, several siblings otherwise."""
        out = [value for _, _, live in self._entries for value in live]
        out.extend(self._anonymous)
        return out

    def context(self) -> VectorClock:
        """The causal context (dvvset ``join``): every dot this state knows of."""
        return VectorClock({node: n for node, n, _ in self._entries})

    def dots(self) -> list[tuple[tuple[str, int], V]]:
        """Each live value with its dot ``(node, n)``; anonymous values are not listed."""
        return [
            ((node, n - k), value)
            for node, n, live in self._entries
            for k, value in enumerate(live)
        ]

    def __len__(self) -> int:
        return sum(len(live) for _, _, live in self._entries) + len(self._anonymous)

    # -- writing -------------------------------------------------------------------------------

    def update(self, node: str, replica: DVVSet[V] | None = None) -> DVVSet[V]:
        """Give this client write (from :meth:`new`, one value) a dot at ``node``.

        Implements dvvset ``update/2`` (no ``replica``) and ``update/3``: the write's context is
        first merged with the replica's current state, discarding every value it covers, then
        the value is recorded under the next dot of ``node``.

        Args:
            node: the id of the coordinating node (unique per coordinator).
            replica: the node's current state for the key.

        Raises:
            ValueError: this state does not hold exactly one anonymous value.
            TypeError: ``node`` is not a ``str`` or ``replica`` not a :class:`DVVSet`.
        """
        if not isinstance(node, str):
            raise TypeError(f"node must be a str, got {type(node).__name__}")
        if len(self._anonymous) != 1:
            raise ValueError("update needs a state made by DVVSet.new (one value without a dot)")
        value = self._anonymous[0]
        if replica is None:
            return DVVSet._of(_event(self._entries, node, value), ())
        if not isinstance(replica, DVVSet):
            raise TypeError(f"replica must be a DVVSet, got {type(replica).__name__}")
        synced = DVVSet._of(self._entries, ()).merge(replica)
        return DVVSet._of(_event(synced._entries, node, value), synced._anonymous)

    def put(self, value: V, context: VectorClock | None, node: str) -> DVVSet[V]:
        """Record a client write coordinated by ``node``: ``new(value, context).update(...)``.

        Args:
            value: the value written.
            context: what the client read with the value it is replacing (:meth:`context`);
                ``None`` for a blind write, which becomes a sibling of every current value.
            node: the coordinating node's id.

        Returns:
            The new state of the key on ``node``.
        """
        return DVVSet.new(value, context).update(node, self)

    def merge(self, other: DVVSet[V]) -> DVVSet[V]:
        """Join two replicas' states of one key (dvvset ``sync``).

        Raises:
            TypeError: ``other`` is not a :class:`DVVSet`.
        """
        if not isinstance(other, DVVSet):
            raise TypeError(f"other must be a DVVSet, got {type(other).__name__}")
        if _dominates(other._entries, self._entries):
            anonymous = other._anonymous
        elif _dominates(self._entries, other._entries):
            anonymous = self._anonymous
        else:
            anonymous = _dedupe((*self._anonymous, *other._anonymous))
        return DVVSet._of(_merge_entries(self._entries, other._entries), anonymous)

    def resolve(self, resolver: Callable[[list[V]], V], node: str) -> DVVSet[V]:
        """Replace the siblings with ``resolver(values)``, written with the full context."""
        return self.put(resolver(self.values), self.context(), node)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DVVSet):
            return NotImplemented
        return self._entries == other._entries and self._anonymous == other._anonymous

    __hash__ = None  # type: ignore[assignment]  # values may be unhashable

    def __repr__(self) -> str:
        return f"DVVSet(entries={list(self._entries)!r}, anonymous={list(self._anonymous)!r})"


def _event(entries: tuple[_Entry[V], ...], node: str, value: V) -> tuple[_Entry[V], ...]:
    out: list[_Entry[V]] = []
    placed = False
    for entry in entries:
        if not placed and entry[0] == node:
            out.append((node, entry[1] + 1, (value, *entry[2])))
            placed = True
        elif not placed and entry[0] > node:
            out.append((node, 1, (value,)))
            out.append(entry)
            placed = True
        else:
            out.append(entry)
    if not placed:
        out.append((node, 1, (value,)))
    return tuple(out)
