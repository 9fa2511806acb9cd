"""Consistent hashing against uhashring (the Python reference) and the bisect floor.

Goals (issue 3), as the largest acceptable ``ours / row`` ratio:

* ``get_node`` >= 5x faster than uhashring at 10 nodes (ratio <= 0.2) and >= 4x at 100 nodes
  (<= 0.25), and <= 1.3x the floor ``owners[bisect(points, mmh3.hash(key))]`` over a ring with
  the same number of points;
* ``get_nodes(key, 3)`` <= 2.5x ``get_node``;
* building a 100-node ring >= 2x faster than uhashring (<= 0.5); adding plus removing a node at
  100 nodes >= 2x faster (<= 0.5).

Lookups loop over the same 1,000 keys in every row, on a warm ring (the prefix table caches
the owner of every hash bucket that lies inside one interval; about 90% of buckets at 100 nodes).
dsprims places 400 points per node by default, uhashring 160: the build and add/remove groups
also compare at 160 points per node.
"""

from __future__ import annotations

from bisect import bisect
from typing import Any

import mmh3
import uhashring

from dsprims import HashRing

KEYS = [f"user:{i}" for i in range(1000)]
NODES_10 = [f"node-{i}" for i in range(10)]
NODES_100 = [f"node-{i}" for i in range(100)]


def _loop(get: Any) -> Any:
    def run() -> None:
        for key in KEYS:
            get(key)

    return run


def _floor(nodes: list[str], vnodes: int = 400) -> Any:
    """A bare successor ring with the same number of points: the physical lower bound."""
    pairs = sorted((mmh3.hash(f"{n}-{i}", 0, False), n) for n in nodes for i in range(vnodes))
    points = [p for p, _ in pairs] + [1 << 32]
    owners = [n for _, n in pairs] + [pairs[0][1]]
    murmur = mmh3.hash

    def run() -> None:
        for key in KEYS:
            owners[bisect(points, murmur(key, 0, False))]

    return run


def _warm(ring: HashRing) -> HashRing:
    for key in KEYS:
        ring.get_node(key)
    return ring


# -- get_node ------------------------------------------------------------------------------------

GET_10 = "hashing: get_node x1000, 10 nodes"
GET_100 = "hashing: get_node x1000, 100 nodes"


def test_get_node_10_ours(mark: Any) -> None:
    mark(GET_10, "ours", "HashRing.get_node")(_loop(_warm(HashRing(NODES_10)).get_node))


def test_get_node_10_uhashring(mark: Any) -> None:
    ring = uhashring.HashRing(NODES_10)
    mark(GET_10, "peer", "uhashring 2.5 get_node", goal=0.2)(_loop(ring.get_node))


def test_get_node_10_floor(mark: Any) -> None:
    mark(GET_10, "floor", "owners[bisect(points, mmh3.hash(key))]", goal=1.3)(_floor(NODES_10))


def test_get_node_100_ours(mark: Any) -> None:
    mark(GET_100, "ours", "HashRing.get_node")(_loop(_warm(HashRing(NODES_100)).get_node))


def test_get_node_100_uhashring(mark: Any) -> None:
    ring = uhashring.HashRing(NODES_100)
    mark(GET_100, "peer", "uhashring 2.5 get_node", goal=0.25)(_loop(ring.get_node))


def test_get_node_100_floor(mark: Any) -> None:
    mark(GET_100, "floor", "owners[bisect(points, mmh3.hash(key))]", goal=1.3)(_floor(NODES_100))


# -- get_nodes -----------------------------------------------------------------------------------

PREFS = "hashing: get_nodes(key, 3) x1000, 100 nodes"


def test_get_nodes_ours(mark: Any) -> None:
    ring = _warm(HashRing(NODES_100))
    mark(PREFS, "ours", "HashRing.get_nodes(key, 3)")(_loop(lambda k: ring.get_nodes(k, 3)))


def test_get_nodes_vs_get_node(mark: Any) -> None:
    ring = _warm(HashRing(NODES_100))
    mark(PREFS, "floor", "HashRing.get_node (same ring)", goal=2.5)(_loop(ring.get_node))


def test_get_nodes_uhashring(mark: Any) -> None:
    ring = uhashring.HashRing(NODES_100)

    def three(key: str) -> list[str]:
        return list(ring.range(key, 3, True))

    mark(PREFS, "peer", "uhashring 2.5 range(key, 3)")(_loop(three))


# -- build and change ------------------------------------------------------------------------------

BUILD = "hashing: build a 100-node ring"
BUILD_160 = "hashing: build a 100-node ring, 160 points per node"
CHANGE = "hashing: add + remove a node at 100 nodes"
CHANGE_160 = "hashing: add + remove a node at 100 nodes, 160 points per node"


def test_build_ours(mark: Any) -> None:
    mark(BUILD, "ours", "HashRing (400 points per node)")(HashRing, NODES_100)


def test_build_uhashring(mark: Any) -> None:
    mark(BUILD, "peer", "uhashring 2.5 (160 per node)", goal=0.5)(uhashring.HashRing, NODES_100)


def test_build_160_ours(mark: Any) -> None:
    mark(BUILD_160, "ours", "HashRing(vnodes=160)")(lambda: HashRing(NODES_100, vnodes=160))


def test_build_160_uhashring(mark: Any) -> None:
    mark(BUILD_160, "peer", "uhashring 2.5", goal=0.5)(uhashring.HashRing, NODES_100)


def _churn(ring: Any) -> Any:
    def run() -> None:
        ring.add_node("extra")
        ring.remove_node("extra")

    return run


def test_change_ours(mark: Any) -> None:
    mark(CHANGE, "ours", "HashRing add_node + remove_node")(_churn(HashRing(NODES_100)))


def test_change_uhashring(mark: Any) -> None:
    ring = uhashring.HashRing(NODES_100)
    mark(CHANGE, "peer", "uhashring 2.5", goal=0.5)(_churn(ring))


def test_change_160_ours(mark: Any) -> None:
    ring = HashRing(NODES_100, vnodes=160)
    mark(CHANGE_160, "ours", "HashRing(vnodes=160)")(_churn(ring))


def test_change_160_uhashring(mark: Any) -> None:
    ring = uhashring.HashRing(NODES_100)
    mark(CHANGE_160, "peer", "uhashring 2.5", goal=0.5)(_churn(ring))


# -- ketama --------------------------------------------------------------------------------------

KETAMA = "hashing: ketama get_node x1000, 100 nodes"


def test_ketama_ours(mark: Any) -> None:
    ring = HashRing(NODES_100, hash="ketama")
    mark(KETAMA, "ours", "HashRing(hash='ketama')")(_loop(ring.get_node))


def test_ketama_uhashring(mark: Any) -> None:
    ring = uhashring.HashRing(NODES_100, hash_fn="ketama")
    mark(KETAMA, "peer", "uhashring 2.5 ketama")(_loop(ring.get_node))
