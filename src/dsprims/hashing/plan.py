"""Capacity planning: compare node lists before and after a change, for any algorithm.

:func:`plan` answers what an operator asks before resizing a cluster: what share of the keys
each node holds before and after, how uneven that is (peak/mean), and what fraction of keys
moves. For the default :class:`~dsprims.hashing.HashRing` the shares and the moved fraction are
exact (computed from the ring's intervals and :meth:`~dsprims.hashing.HashRing.diff`); for the
other algorithms they are measured over ``keys`` sample keys (``"key-0"``, ``"key-1"``, ...),
with a sampling error of about ``1/sqrt(keys / n)`` per node.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from dsprims.errors import ConfigurationError
from dsprims.hashing.bounded import BoundedLoadBalancer
from dsprims.hashing.jump import JumpHash
from dsprims.hashing.maglev import MaglevHash
from dsprims.hashing.rendezvous import RendezvousHash
from dsprims.hashing.ring import HashRing

__all__ = ["ALGORITHMS", "CapacityPlan", "NodeShare", "parse_node_list", "plan"]

Algorithm = Literal["ring", "ketama", "jump", "rendezvous", "maglev", "bounded"]

#: Algorithm names accepted by :func:`plan` and the ``dsprims ring`` command.
ALGORITHMS: Final[tuple[Algorithm, ...]] = (
    "ring",
    "ketama",
    "jump",
    "rendezvous",
    "maglev",
    "bounded",
)
_WEIGHTED = ("ring", "ketama", "rendezvous")


@dataclass(frozen=True)
class NodeShare:
    """One node's weight and share of keys before and after (0.0 when absent)."""

    name: str
    weight_before: float
    weight_after: float
    share_before: float
    share_after: float


@dataclass(frozen=True)
class CapacityPlan:
    """The result of :func:`plan`.

    Attributes:
        algorithm: the algorithm compared.
        exact: whether shares and movement are exact (default ring) or sampled.
        keys: the number of sample keys (0 when exact).
        nodes: per-node rows, in the order nodes first appear (before, then new ones).
        peak_to_mean_before: the largest share divided by the mean share, before.
        peak_to_mean_after: the same after the change.
        moved: the fraction of keys whose node changes.
        ideal_moved: the least any algorithm must move (keys of removed nodes, plus what new
            nodes must receive to hold their weighted share).
    """

    algorithm: Algorithm
    exact: bool
    keys: int
    nodes: tuple[NodeShare, ...]
    peak_to_mean_before: float
    peak_to_mean_after: float
    moved: float
    ideal_moved: float


def parse_node_list(text: str) -> dict[str, float]:
    """Parse ``"a,b=2,c=0.5"`` (name, optional ``=weight``) into name -> weight.

    Raises:
        ConfigurationError: an empty name, a duplicate, or a weight that is not a number.
    """
    out: dict[str, float] = {}
    for raw in text.replace("\n", ",").split(","):
        item = raw.strip()
        if not item or item.startswith("#"):
            continue
        name, sep, weight = item.partition("=")
        name = name.strip()
        if name in out:
            raise ConfigurationError(f"node {name!r} is listed twice")
        try:
            out[name] = float(weight) if sep else 1.0
        except ValueError:
            raise ConfigurationError(
                f"weight of node {name!r} is not a number: {weight!r}"
            ) from None
    return out


def _lookup(
    algorithm: Algorithm,
    nodes: Mapping[str, float],
    *,
    vnodes: int | None,
    table_size: int,
    load_factor: float,
) -> Callable[[str], str]:
    if algorithm not in _WEIGHTED and any(w != 1.0 for w in nodes.values()):
        raise ConfigurationError(f"{algorithm} does not support weights")
    if algorithm == "ring":
        return HashRing(nodes, vnodes=vnodes).get_node
    if algorithm == "ketama":
        return HashRing(nodes, hash="ketama").get_node
    if algorithm == "jump":
        return JumpHash(list(nodes)).get_node
    if algorithm == "rendezvous":
        return RendezvousHash(nodes).get_node
    if algorithm == "maglev":
        return MaglevHash(list(nodes), table_size=table_size).get_node
    if algorithm == "bounded":
        return BoundedLoadBalancer(list(nodes), load_factor=load_factor, vnodes=vnodes).acquire
    raise ConfigurationError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")


def _peak(shares: Mapping[str, float]) -> float:
    return max(shares.values()) * len(shares) if shares else 0.0


def plan(
    algorithm: Algorithm,
    before: Mapping[str, float],
    after: Mapping[str, float] | None = None,
    *,
    keys: int = 100_000,
    vnodes: int | None = None,
    table_size: int = 65537,
    load_factor: float = 1.25,
) -> CapacityPlan:
    """Shares per node, peak/mean and the fraction of keys moved from ``before`` to ``after``.

    Args:
        algorithm: one of :data:`ALGORITHMS`.
        before: node name -> weight before the change.
        after: node name -> weight after the change (``None``: no change).
        keys: sample keys for the algorithms without exact shares.
        vnodes: points per node for ``ring`` and ``bounded``.
        table_size: Maglev's table size.
        load_factor: the bounded-load balancer's ``c``.

    Raises:
        ConfigurationError: an unknown algorithm, weights on an algorithm without weights, or any
            parameter the algorithm rejects.
    """
    if not before:
        raise ConfigurationError("the node list before the change is empty")
    after = before if after is None else after
    if not after:
        raise ConfigurationError("the node list after the change is empty")
    if isinstance(keys, bool) or not isinstance(keys, int) or keys < 1:
        raise ConfigurationError(f"keys must be a positive int, got {keys!r}")
    exact = algorithm == "ring"
    if exact:
        ring_a, ring_b = HashRing(before, vnodes=vnodes), HashRing(after, vnodes=vnodes)
        share_a, share_b = ring_a.shares(), ring_b.shares()
        moved = sum(m.fraction for m in ring_a.diff(ring_b))
        sample = 0
    else:
        get_a = _lookup(
            algorithm, before, vnodes=vnodes, table_size=table_size, load_factor=load_factor
        )
        get_b = _lookup(
            algorithm, after, vnodes=vnodes, table_size=table_size, load_factor=load_factor
        )
        sample_keys = [f"key-{i}" for i in range(keys)]
        owners_a = [get_a(k) for k in sample_keys]
        owners_b = [get_b(k) for k in sample_keys]
        count_a, count_b = Counter(owners_a), Counter(owners_b)
        share_a = {n: count_a[n] / keys for n in before}
        share_b = {n: count_b[n] / keys for n in after}
        moved = sum(a != b for a, b in zip(owners_a, owners_b, strict=True)) / keys
        sample = keys
    total_b = sum(after.values())
    gone = sum(share_a.get(n, 0.0) for n in before if n not in after)
    new = sum(w / total_b for n, w in after.items() if n not in before)
    rows = [
        NodeShare(
            name,
            before.get(name, 0.0),
            after.get(name, 0.0),
            share_a.get(name, 0.0),
            share_b.get(name, 0.0),
        )
        for name in [*before, *(n for n in after if n not in before)]
    ]
    return CapacityPlan(
        algorithm=algorithm,
        exact=exact,
        keys=sample,
        nodes=tuple(rows),
        peak_to_mean_before=_peak(_normalised(share_a, before)),
        peak_to_mean_after=_peak(_normalised(share_b, after)),
        moved=moved,
        ideal_moved=max(gone, new),
    )


def _normalised(shares: Mapping[str, float], weights: Mapping[str, float]) -> dict[str, float]:
    """Shares divided by weight share, so a node holding exactly its weight scores 1/n."""
    total = sum(weights.values())
    n = len(weights)
    return {name: shares.get(name, 0.0) / (w / total) / n for name, w in weights.items()}
