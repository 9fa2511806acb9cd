"""Jump, rendezvous, Maglev and bounded-load balancing."""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsprims import (
    BoundedLoadBalancer,
    ConfigurationError,
    EmptyRingError,
    JumpHash,
    MaglevHash,
    RendezvousHash,
    jump_hash,
)
from dsprims.hashing.bounded import choose_bounded
from dsprims.hashing.maglev import maglev_table

KEYS = [f"key-{i}" for i in range(4000)]
names = st.lists(
    st.text(alphabet="abcdef0123456789-", min_size=1, max_size=6),
    min_size=1,
    max_size=8,
    unique=True,
)

# -- jump ----------------------------------------------------------------------------------------

# From dgryski/go-jump jump_test.go, "generated from the reference C++ code" of the paper:
# jump_hash(key, buckets) for buckets = 1, 2, 3, ...
JUMP_VECTORS = {
    0: [0] * 20,
    1: [0, 0, 0, 0, 0, 0, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 17, 17],
    0xDEADBEEF: [0, 1, 2, 3, 3, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 16, 16, 16],
    0x0DDC0FFEEBADF00D: [0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 15, 15, 15, 15],
}


@pytest.mark.parametrize("key", list(JUMP_VECTORS))
def test_jump_reference_vectors(key: int) -> None:
    assert [jump_hash(key, n + 1) for n in range(len(JUMP_VECTORS[key]))] == JUMP_VECTORS[key]


@given(st.integers(min_value=0, max_value=2**64 - 1), st.integers(min_value=1, max_value=500))
def test_jump_moves_keys_only_to_the_new_bucket(key: int, buckets: int) -> None:
    before, after = jump_hash(key, buckets), jump_hash(key, buckets + 1)
    assert 0 <= before < buckets
    assert after in (before, buckets)


def test_jump_bad_input() -> None:
    with pytest.raises(ValueError, match="buckets"):
        jump_hash(1, 0)
    with pytest.raises(ValueError, match="key"):
        jump_hash(-1, 3)
    with pytest.raises(ValueError, match="key"):
        jump_hash(2**64, 3)
    with pytest.raises(TypeError, match="key"):
        jump_hash("1", 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="buckets"):
        jump_hash(1, 2.0)  # type: ignore[arg-type]


def test_jump_hash_class() -> None:
    jh = JumpHash(["a", "b", "c"])
    before = [jh.get_node(k) for k in KEYS]
    counts = Counter(before)
    assert all(1200 < c < 1470 for c in counts.values())
    jh.add_node("d")
    after = [jh.get_node(k) for k in KEYS]
    assert all(y in (x, "d") for x, y in zip(before, after, strict=True))
    jh.remove_node("d")
    assert [jh.get_node(k) for k in KEYS] == before
    jh.remove_node("a")  # "c" moves into a's slot
    assert jh.nodes == ("c", "b")
    moved = [(x, y) for x, y in zip(before, (jh.get_node(k) for k in KEYS), strict=True) if x != y]
    assert all(x in ("a", "c") for x, _ in moved)
    with pytest.raises(TypeError):
        jh.get_node(3)  # type: ignore[arg-type]
    with pytest.raises(EmptyRingError):
        JumpHash().get_node("k")
    with pytest.raises(ConfigurationError):
        JumpHash(["a", "a"])
    with pytest.raises(KeyError):
        jh.remove_node("zz")
    assert len(jh) == 2
    assert "b" in jh


# -- rendezvous ----------------------------------------------------------------------------------


@given(names, st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=20))
def test_rendezvous_failover_order(nodes: list[str], sample: list[str]) -> None:
    hrw = RendezvousHash(nodes)
    for key in sample:
        prefs = hrw.get_nodes(key, len(nodes))
        assert sorted(prefs) == sorted(nodes)
        assert prefs[0] == hrw.get_node(key)
        if len(nodes) > 1:
            smaller = RendezvousHash([n for n in nodes if n != prefs[0]])
            assert smaller.get_node(key) == prefs[1]


def test_rendezvous_weights_set_shares() -> None:
    hrw = RendezvousHash({"a": 1.0, "b": 2.0, "c": 1.0})
    counts = Counter(hrw.get_node(k) for k in KEYS)
    assert abs(counts["b"] / len(KEYS) - 0.5) < 0.04
    assert abs(counts["a"] / len(KEYS) - 0.25) < 0.04


def test_rendezvous_weight_change_moves_only_that_nodes_keys() -> None:
    hrw = RendezvousHash(["a", "b", "c", "d"])
    before = [hrw.get_node(k) for k in KEYS]
    hrw.add_node("a", 3.0)
    after = [hrw.get_node(k) for k in KEYS]
    assert all(x == y or "a" in (x, y) for x, y in zip(before, after, strict=True))
    assert sum(y == "a" for y in after) > sum(x == "a" for x in before)
    hrw.remove_node("a")
    assert "a" not in [hrw.get_node(k) for k in KEYS]


def test_rendezvous_bad_input() -> None:
    with pytest.raises(ConfigurationError):
        RendezvousHash({"a": float("nan")})
    with pytest.raises(ConfigurationError):
        RendezvousHash({"a": 0})
    with pytest.raises(EmptyRingError):
        RendezvousHash().get_node("k")
    with pytest.raises(TypeError):
        RendezvousHash(["a"]).get_node(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n must be"):
        RendezvousHash(["a"]).get_nodes("k", 0)
    with pytest.raises(KeyError):
        RendezvousHash(["a"]).remove_node("b")


# -- maglev --------------------------------------------------------------------------------------


def test_maglev_balance_and_order_independence() -> None:
    nodes = [f"n{i}" for i in range(7)]
    m = MaglevHash(nodes, table_size=1009)
    counts = Counter(m.slots())
    assert set(counts.values()) <= {1009 // 7, 1009 // 7 + 1}
    assert MaglevHash(list(reversed(nodes)), table_size=1009).slots() == m.slots()
    assert maglev_table(nodes, 1009) == m.slots()


def test_maglev_disruption_is_small() -> None:
    nodes = [f"n{i}" for i in range(20)]
    m = MaglevHash(nodes)
    before = m.slots()
    m.remove_node("n7")
    after = m.slots()
    changed = [(x, y) for x, y in zip(before, after, strict=True) if x != y]
    lost = sum(x == "n7" for x in before)
    assert all(y != "n7" for _, y in changed)
    assert lost <= len(changed) < lost * 1.3  # n7's slots plus a few others
    full = MaglevHash(nodes)
    keys_moved = sum(full.get_node(k) != m.get_node(k) for k in KEYS[:1000])
    assert keys_moved < 1000 * 0.09


def test_maglev_bad_input() -> None:
    with pytest.raises(ConfigurationError, match="prime"):
        MaglevHash(["a"], table_size=1000)
    with pytest.raises(ConfigurationError, match="exceed"):
        MaglevHash(["a", "b", "c"], table_size=3)
    with pytest.raises(TypeError):
        MaglevHash(["a"], table_size=7.0)  # type: ignore[arg-type]
    with pytest.raises(EmptyRingError):
        MaglevHash().get_node("k")
    with pytest.raises(TypeError):
        MaglevHash(["a"], table_size=7).get_node(1)  # type: ignore[arg-type]


# -- bounded loads -------------------------------------------------------------------------------

actions = st.lists(
    st.tuples(st.sampled_from(["acquire", "release"]), st.integers(min_value=0, max_value=60)),
    max_size=200,
)


@given(
    st.integers(min_value=1, max_value=9),
    st.sampled_from([1.0, 1.1, 1.25, 1.5, 2.0]),
    actions,
)
def test_bounded_loads_respect_the_hard_cap(
    nodes: int, factor: float, ops: list[tuple[str, int]]
) -> None:
    lb = BoundedLoadBalancer([f"n{i}" for i in range(nodes)], load_factor=factor, vnodes=40)
    c = Fraction(factor).limit_denominator(10_000)
    held: set[int] = set()
    only_acquires = True
    for op, k in ops:
        if op == "acquire":
            before = lb.loads()
            node = lb.acquire(f"k{k}")
            assert lb.acquire(f"k{k}") == node  # sticky
            if k in held:
                assert lb.loads() == before  # already placed: nothing moves, nothing counts twice
                continue
            held.add(k)
            cap = math.ceil(c * len(held) / nodes)
            assert lb.loads()[node] <= cap  # a new placement never exceeds the hard cap
            if only_acquires:
                assert max(lb.loads().values()) <= cap
        elif k in held:
            lb.release(f"k{k}")
            held.discard(k)
            only_acquires = False
        else:
            with pytest.raises(KeyError):
                lb.release(f"k{k}")
        assert sum(lb.loads().values()) == len(held)


def test_bounded_prefers_the_ring_owner_when_it_has_room() -> None:
    lb = BoundedLoadBalancer(["a", "b", "c"], load_factor=100.0)
    for k in KEYS[:300]:
        assert lb.acquire(k) == lb._ring.get_node(k)


def test_bounded_exact_load_factor_and_capacity() -> None:
    lb = BoundedLoadBalancer(["a", "b", "c", "d"], load_factor=1.1)
    assert lb.load_factor == Fraction(11, 10)
    assert lb.capacity(40) == 11
    for k in KEYS[:400]:
        lb.acquire(k)
    assert max(lb.loads().values()) <= 110


def test_bounded_remove_node_reassigns_under_the_cap() -> None:
    lb = BoundedLoadBalancer(["a", "b", "c"], load_factor=1.25)
    for k in KEYS[:90]:
        lb.acquire(k)
    moved = lb.remove_node("b")
    assert moved
    assert set(moved.values()) <= {"a", "c"}
    assert sum(lb.loads().values()) == 90
    assert max(lb.loads().values()) <= math.ceil(Fraction(5, 4) * 90 / 2)
    lb.add_node("d")
    assert lb.loads()["d"] == 0
    assert lb.node_of(KEYS[0]) in ("a", "c")


def test_choose_bounded_is_a_pure_choice() -> None:
    assert choose_bounded(["x", "y"], {"x": 3, "y": 1}, 3) == "y"
    with pytest.raises(LookupError):
        choose_bounded(["x"], {"x": 3}, 3)


def test_bounded_bad_input() -> None:
    for bad in (0.99, float("nan"), float("inf")):
        with pytest.raises(ConfigurationError, match="load_factor"):
            BoundedLoadBalancer(["a"], load_factor=bad)
    with pytest.raises(ConfigurationError, match="weights"):
        BoundedLoadBalancer({"a": 2.0})
    with pytest.raises(EmptyRingError):
        BoundedLoadBalancer().acquire("k")
    with pytest.raises(TypeError):
        BoundedLoadBalancer(["a"]).acquire(5)  # type: ignore[arg-type]
