"""Lookup cost against ring size, for the report's line plot (``extra_info["x"]``).

Each row looks up the same 1,000 keys on a warm ring of 10, 100 or 1,000 nodes: dsprims'
``HashRing``, uhashring's ring, and the bisect floor over the same number of points.
"""

from __future__ import annotations

from bisect import bisect
from typing import Any

import mmh3
import pytest
import uhashring

from dsprims import HashRing

GROUP = "hashing: get_node x1000 vs ring size"
KEYS = [f"user:{i}" for i in range(1000)]
SIZES = [10, 100, 1000]


def _nodes(size: int) -> list[str]:
    return [f"node-{i}" for i in range(size)]


def _lookups(get: Any) -> Any:
    for key in KEYS:
        get(key)  # warm caches, as a long-running service has them

    def run() -> None:
        for key in KEYS:
            get(key)

    return run


def _floor(size: int) -> Any:
    pairs = sorted((mmh3.hash(f"{n}-{i}", 0, False), n) for n in _nodes(size) for i in range(400))
    points = [p for p, _ in pairs] + [1 << 32]
    owners = [n for _, n in pairs] + [pairs[0][1]]
    murmur = mmh3.hash
    return _lookups(lambda key: owners[bisect(points, murmur(key, 0, False))])


def _sized(benchmark: Any, mark: Any, size: int, role: str, label: str) -> Any:
    bench = mark(GROUP, role, label)
    bench.extra_info.update(x=size, x_label="nodes in the ring")
    return bench


@pytest.mark.parametrize("size", SIZES)
def test_sizes_ours(benchmark: Any, mark: Any, size: int) -> None:
    _sized(benchmark, mark, size, "ours", "HashRing.get_node")(
        _lookups(HashRing(_nodes(size)).get_node)
    )


@pytest.mark.parametrize("size", SIZES)
def test_sizes_uhashring(benchmark: Any, mark: Any, size: int) -> None:
    ring = uhashring.HashRing(nodes=_nodes(size))
    _sized(benchmark, mark, size, "peer", "uhashring get_node")(_lookups(ring.get_node))


@pytest.mark.parametrize("size", SIZES)
def test_sizes_floor(benchmark: Any, mark: Any, size: int) -> None:
    _sized(benchmark, mark, size, "floor", "bisect floor (400 points/node)")(_floor(size))
