"""Consistent hashing against uhashring (the Python reference) and the bisect floor.

Goals (issue 3), as the largest acceptable ``ours / row`` ratio:

* ``get_node`` >= 5x faster than uhashring at 10 nodes (ratio <= 0.2) and >= 4x at 100 nodes
  (<= 0.25), and <= 1.3x the floor ``owners[bisect(points, mmh3.hash(key))]`` over a ring with
  the same number of points;
* ``get_nodes(key, 3)`` <= 2.5x ``get_node``;
* building a 100-node ring >= 2x faster than uhashring (<= 0.5); adding plus removing a node at
  100 nodes >= 2x faster (<= 0.5).

Every group runs its contenders interleaved (``compare``); the ratios are medians of per-round
ratios. Lookups loop over the same 1,000 keys in every row, on a warm ring (the prefix table caches
the owner of every hash bucket that lies inside one interval; about 90% of buckets at 100 nodes).
dsprims places 400 points per node by default, uhashring 160: the build and add/remove groups
also compare at 160 points per node.
"""

from __future__ import annotations

from bisect import bisect
from typing import Any

import mmh3
import pytest
import uhashring

from benchmarks.conftest import Contender
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
# Every goal group runs its contenders interleaved (the ``compare`` fixture): the ratios are
# medians of per-round ratios, so the shared machine's load drift cancels.

GET_10 = "hashing: get_node x1000, 10 nodes"
GET_100 = "hashing: get_node x1000, 100 nodes"


@pytest.mark.parametrize(
    ("group", "nodes", "goal"), [(GET_10, NODES_10, 0.2), (GET_100, NODES_100, 0.25)]
)
def test_get_node(compare: Any, group: str, nodes: list[str], goal: float) -> None:
    compare(
        group,
        [
            Contender("ours", "HashRing.get_node", _loop(_warm(HashRing(nodes)).get_node)),
            Contender(
                "peer", "uhashring 2.5 get_node", _loop(uhashring.HashRing(nodes).get_node), goal
            ),
            Contender("floor", "owners[bisect(points, mmh3.hash(key))]", _floor(nodes), 1.3),
        ],
    )


# -- get_nodes -----------------------------------------------------------------------------------

PREFS = "hashing: get_nodes(key, 3) x1000, 100 nodes"


def test_get_nodes(compare: Any) -> None:
    ring = _warm(HashRing(NODES_100))
    peer = uhashring.HashRing(NODES_100)

    def three(key: str) -> list[str]:
        return list(peer.range(key, 3, True))

    compare(
        PREFS,
        [
            Contender("ours", "HashRing.get_nodes(key, 3)", _loop(lambda k: ring.get_nodes(k, 3))),
            Contender("floor", "HashRing.get_node (same ring)", _loop(ring.get_node), 2.5),
            Contender("peer", "uhashring 2.5 range(key, 3)", _loop(three)),
        ],
    )


# -- build and change ------------------------------------------------------------------------------

BUILD = "hashing: build a 100-node ring"
BUILD_160 = "hashing: build a 100-node ring, 160 points per node"
CHANGE = "hashing: add + remove a node at 100 nodes"
CHANGE_160 = "hashing: add + remove a node at 100 nodes, 160 points per node"


def test_build(compare: Any) -> None:
    compare(
        BUILD,
        [
            Contender("ours", "HashRing (400 points per node)", lambda: HashRing(NODES_100)),
            Contender(
                "peer",
                "uhashring 2.5 (160 per node)",
                lambda: uhashring.HashRing(NODES_100),
                0.5,
            ),
        ],
    )


def test_build_160(compare: Any) -> None:
    compare(
        BUILD_160,
        [
            Contender("ours", "HashRing(vnodes=160)", lambda: HashRing(NODES_100, vnodes=160)),
            Contender("peer", "uhashring 2.5", lambda: uhashring.HashRing(NODES_100), 0.5),
        ],
    )


def _churn(ring: Any) -> Any:
    def run() -> None:
        ring.add_node("extra")
        ring.remove_node("extra")

    return run


def test_change(compare: Any) -> None:
    compare(
        CHANGE,
        [
            Contender("ours", "HashRing add_node + remove_node", _churn(HashRing(NODES_100))),
            Contender("peer", "uhashring 2.5", _churn(uhashring.HashRing(NODES_100)), 0.5),
        ],
    )


def test_change_160(compare: Any) -> None:
    compare(
        CHANGE_160,
        [
            Contender("ours", "HashRing(vnodes=160)", _churn(HashRing(NODES_100, vnodes=160))),
            Contender("peer", "uhashring 2.5", _churn(uhashring.HashRing(NODES_100)), 0.5),
        ],
    )


# -- ketama --------------------------------------------------------------------------------------

KETAMA = "hashing: ketama get_node x1000, 100 nodes"


def test_ketama(compare: Any) -> None:
    compare(
        KETAMA,
        [
            Contender(
                "ours",
                "HashRing(hash='ketama')",
                _loop(HashRing(NODES_100, hash="ketama").get_node),
            ),
            Contender(
                "peer",
                "uhashring 2.5 ketama",
                _loop(uhashring.HashRing(NODES_100, hash_fn="ketama").get_node),
            ),
        ],
    )
