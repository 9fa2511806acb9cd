"""hash="ketama" against published libketama vectors and libketama's float32 arithmetic."""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter

import pytest

from dsprims import ConfigurationError, HashRing
from dsprims.hashing.ketama import ketama_hash, ketama_hash_count, ketama_points

# libketama's own server file: https://github.com/RJ/ketama/blob/master/ketama.servers
KETAMA_SERVERS = {
    "10.0.1.1:11211": 600,
    "10.0.1.2:11211": 300,
    "10.0.1.3:11211": 200,
    "10.0.1.4:11211": 350,
    "10.0.1.5:11211": 1000,
    "10.0.1.6:11211": 800,
    "10.0.1.7:11211": 950,
    "10.0.1.8:11211": 100,
}


@pytest.mark.slow
def test_libketama_test_harness_md5() -> None:
    """libketama/test.sh: the MD5 of ketama_test's output over ketama.servers.

    ketama_test (RJ/ketama, libketama/ketama_test.c) prints ketama_error() (empty on success,
    so one newline), then for each key "0".."999999" the line "<key hash> <point> <server>".
    test.sh accepts libketama when the MD5 of that output is 5672b131391f5aa2b280936aec1eea74.
    """
    ring = HashRing(KETAMA_SERVERS, hash="ketama")
    locate = ring.locate
    digest = hashlib.md5(b"\n")
    for block in range(100):
        lines = []
        for i in range(block * 10_000, (block + 1) * 10_000):
            key_hash, point, server = locate(str(i))
            lines.append(f"{key_hash} {point} {server}\n")
        digest.update("".join(lines).encode())
    assert digest.hexdigest() == "5672b131391f5aa2b280936aec1eea74"


def test_algorithm_consistenthash_ketama_counts() -> None:
    """Counts from Perl's Algorithm::ConsistentHash::Ketama (a libketama port), as published in
    dgryski/go-ketama ketama_test.go: servers server0..server9 at weight 1, keys foo0..foo99999."""
    expected = {
        "server0": 9478,
        "server1": 9029,
        "server2": 10863,
        "server3": 10011,
        "server4": 9734,
        "server5": 9444,
        "server6": 10756,
        "server7": 10021,
        "server8": 10762,
        "server9": 9902,
    }
    ring = HashRing([f"server{i}" for i in range(10)], hash="ketama")
    counts = Counter(ring.get_node(f"foo{i}") for i in range(100_000))
    assert dict(counts) == expected


# Hash counts computed by C (gcc 12, x86-64, SSE float) evaluating libketama's expression
# floorf(((float)w / (float)total) * 40.0 * (float)n) for these inputs.
@pytest.mark.parametrize(
    ("weight", "total", "servers", "count"),
    [
        (600, 4300, 8, 44),
        (1, 3, 3, 40),
        (7, 10, 10, 280),
        (3, 7, 5, 85),
        (5, 31, 31, 200),
        (17, 100, 11, 74),
        (1, 7, 7, 40),
        # float32 rounding makes these equal-weight rings 39 hashes per server, not 40:
        (1, 61, 61, 39),
        (1, 122, 122, 39),
        (1, 237, 237, 39),
        (1, 933, 933, 39),
        (1, 1699, 1699, 39),
    ],
)
def test_float32_weight_arithmetic(weight: int, total: int, servers: int, count: int) -> None:
    assert ketama_hash_count(weight, total, servers) == count


def test_equal_weights_get_156_points_at_61_servers() -> None:
    ring = HashRing([f"s{i}" for i in range(61)], hash="ketama")
    assert len(ketama_points(ring.nodes)) == 61 * 39 * 4


def test_key_hash_is_md5_little_endian() -> None:
    digest = hashlib.md5(b"hello").digest()
    assert ketama_hash(b"hello") == int.from_bytes(digest[:4], "little")
    ring = HashRing(["a"], hash="ketama")
    assert ring.key_hash("hello") == ring.key_hash(b"hello") == ketama_hash(b"hello")


def test_tied_points_follow_server_list_order() -> None:
    """glibc's qsort is a stable merge sort: a point shared by two servers goes to the one
    listed first, and the lookup takes the first of the run of equal points."""
    names = [f"10.0.{i // 250}.{i % 250}:11211" for i in range(1000)]
    entries = ketama_points(dict.fromkeys(names, 1))
    points = [p for p, _ in entries]
    ties = [i for i in range(1, len(points)) if points[i] == points[i - 1]]
    assert ties, "this server list is known to contain tied points"
    forward = HashRing(names, hash="ketama")
    backward = HashRing(list(reversed(names)), hash="ketama")
    order = {name: i for i, name in enumerate(names)}
    for i in ties:
        a, b = entries[i - 1][1], entries[i][1]
        if a == b:
            continue
        first, second = sorted((a, b), key=order.__getitem__)
        # A key hashing exactly onto the tied point belongs to the earlier-listed server.
        tied = points[i]
        assert _owner_of_hash(forward, tied) == first
        assert _owner_of_hash(backward, tied) == second


def _owner_of_hash(ring: HashRing, key_hash: int) -> str:
    for start, end, node in ring.intervals():
        if start < key_hash <= end:
            return node
    raise AssertionError("intervals do not cover the key space")


def test_ketama_rejects_fractional_weights_and_vnodes() -> None:
    with pytest.raises(ConfigurationError, match="whole number"):
        HashRing({"a": 1.5}, hash="ketama")
    with pytest.raises(ConfigurationError, match="vnodes"):
        HashRing(["a"], hash="ketama", vnodes=100)


def test_ketama_add_and_remove_rebuild_like_a_fresh_ring() -> None:
    ring = HashRing({"a:1": 1, "b:1": 2}, hash="ketama")
    ring.add_node("c:1", 3)
    fresh = HashRing({"a:1": 1, "b:1": 2, "c:1": 3}, hash="ketama")
    keys = [f"k{i}" for i in range(2000)]
    assert [ring.get_node(k) for k in keys] == [fresh.get_node(k) for k in keys]
    ring.remove_node("c:1")
    before = HashRing({"a:1": 1, "b:1": 2}, hash="ketama")
    assert [ring.get_node(k) for k in keys] == [before.get_node(k) for k in keys]
    assert ring.diff(before) == []


def test_ketama_diff_explains_moves_and_intervals_cover_the_space() -> None:
    before = HashRing({"a:1": 3, "b:1": 1, "c:1": 2}, hash="ketama")
    after = HashRing({"a:1": 3, "b:1": 1, "c:1": 2, "d:1": 2}, hash="ketama")
    moves = before.diff(after)
    assert moves
    spans = before.intervals()
    assert spans[0][0] == -1
    assert spans[-1][1] == 2**32 - 1
    assert all(x[1] == y[0] for x, y in itertools.pairwise(spans))
    for i in range(3000):
        key = f"k{i}"
        h = before.key_hash(key)
        hits = [m for m in moves if m.contains(h)]
        src, dst = before.get_node(key), after.get_node(key)
        assert [(m.source, m.target) for m in hits] == ([] if src == dst else [(src, dst)])
        assert before.locate(key)[2] == src
    assert sum(m.size for m in moves) > 0
