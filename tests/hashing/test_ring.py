"""HashRing (default mode): determinism, minimal disruption, preference lists, diff, errors."""

from __future__ import annotations

import enum
import itertools
import math
import pickle
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsprims import ConfigurationError, DsprimsError, EmptyRingError, HashRing, Move
from dsprims.hashing import DEFAULT_VNODES, HASH_SPACE, key_hash32
from dsprims.hashing import ring as ring_module
from dsprims.hashing.ring import node_points
from dsprims.testing.strategies import keys

node_names = st.text(alphabet="abcdefgh0123456789-.:", min_size=1, max_size=8)
node_sets = st.lists(node_names, min_size=1, max_size=8, unique=True)
some_keys = st.lists(keys(), min_size=1, max_size=30)

SAMPLE_KEYS = [f"key-{i}" for i in range(3000)]
GOLDEN = ["node-0", "node-0", "node-5", "node-3", "node-7"]


def mapping(ring: HashRing, sample: list[str] = SAMPLE_KEYS) -> list[str]:
    return [ring.get_node(k) for k in sample]


def reference_owner(ring: HashRing, key_hash: int) -> str:
    """The documented rule, computed naively: cells end at 2*(a+b)+1 between points 4a and 4b,
    tied points go to the smallest name."""
    owner_of: dict[int, str] = {}
    for name in sorted(ring.nodes, reverse=True):
        count = max(1, round(ring.vnodes * ring.nodes[name]))
        for q in node_points(name, count):
            owner_of[q] = name
    qs = sorted(owner_of)
    for i, q in enumerate(qs):
        prev = qs[i - 1] if i else qs[-1] - (1 << 30)
        nxt = qs[i + 1] if i + 1 < len(qs) else qs[0] + (1 << 30)
        start, end = 2 * (prev + q) + 1, 2 * (q + nxt) + 1
        for shift in (-HASH_SPACE, 0, HASH_SPACE):
            if start < key_hash + shift <= end:
                return owner_of[q]
    raise AssertionError("no cell holds the hash")


def _walk(ring: HashRing, key_hash: int, want: int) -> list[str]:
    """Reference preference list: distinct owners of points by distance, ties to the left."""
    owner_of: dict[int, str] = {}
    for name in sorted(ring.nodes, reverse=True):
        for q in node_points(name, max(1, round(ring.vnodes * ring.nodes[name]))):
            owner_of[q] = name
    qs = sorted(owner_of)
    right = next((i for i, q in enumerate(qs) if 4 * q >= key_hash), len(qs))
    left = right - 1
    found: list[str] = []
    for _ in range(len(qs)):
        lp = 4 * qs[left % len(qs)]
        rp = 4 * qs[right % len(qs)]
        if (key_hash - lp) % HASH_SPACE <= (rp - key_hash) % HASH_SPACE + 2:
            owner = owner_of[qs[left % len(qs)]]
            left -= 1
        else:
            owner = owner_of[qs[right % len(qs)]]
            right += 1
        if owner not in found:
            found.append(owner)
        if len(found) == want:
            break
    return found


# -- placement ------------------------------------------------------------------------------


def test_placement_is_pinned() -> None:
    """Golden values: placement must never change between releases, platforms or Pythons."""
    ring = HashRing([f"node-{i}" for i in range(10)])
    assert key_hash32("user:42") == 3349586805
    assert node_points("node-0", 3) == [324653101, 422587007, 498510268]
    assert [ring.get_node(k) for k in ("user:42", "user:43", "", "é", b"\x00")] == GOLDEN
    assert ring.get_nodes("user:42", 3) == ["node-0", "node-6", "node-3"]


def test_placement_ignores_hash_seed() -> None:
    code = (
        "from dsprims import HashRing; r = HashRing(['a', 'b', 'c', 'd']);"
        "print([r.get_node(f'k{i}') for i in range(200)])"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("0", "1", "12345")
    }
    assert len(outputs) == 1


@given(node_sets, st.randoms())
def test_placement_ignores_insertion_order(nodes: list[str], rnd: object) -> None:
    shuffled = list(nodes)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    a = HashRing(nodes, vnodes=20)
    b = HashRing(vnodes=20)
    for name in shuffled:
        b.add_node(name)
    assert a.intervals() == b.intervals()
    assert mapping(a, SAMPLE_KEYS[:200]) == mapping(b, SAMPLE_KEYS[:200])


@given(node_sets, some_keys)
def test_lookup_matches_the_documented_rule(nodes: list[str], sample: list[str]) -> None:
    ring = HashRing(nodes, vnodes=7)
    for key in sample:
        node = ring.get_node(key)
        assert node == reference_owner(ring, ring.key_hash(key))
        assert ring.locate(key) == (ring.key_hash(key), ring.locate(key)[1], node)
        assert ring.get_node(key) == node  # second call may come from the prefix table


def test_labels_are_unambiguous() -> None:
    # "a1" + "0" and "a" + "10" would collide under name+index labels; here the name is the
    # whole input of the point generator, so neither node shadows the other.
    ring = HashRing(["a1", "a", "a10", "a0"])
    assert set(node_points("a1", 400)).isdisjoint(node_points("a", 400))
    shares = ring.shares()
    assert all(0.15 < share < 0.35 for share in shares.values())


def test_ties_go_to_the_smallest_name_and_survive_any_order() -> None:
    """4 nodes x 30,000 points in a 2**30 space: ties between nodes are expected."""
    nodes = ["w", "x", "y", "z"]
    ring = HashRing(nodes, vnodes=30_000)
    ties = ring._snap.shadow
    assert ties, "these names are known to share points"
    for point, holders in ties.items():
        snap = ring._snap
        owner = snap.labels[snap.names[snap.points.index(point)]]
        assert owner == min(holders)
    other = HashRing(vnodes=30_000)
    for name in reversed(nodes):
        other.add_node(name)
    assert other.intervals() == ring.intervals()
    winner = min(next(iter(ties.values())))
    other.remove_node(winner)
    assert other.intervals() == HashRing(set(nodes) - {winner}, vnodes=30_000).intervals()


# -- balance -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("prefix", ["node-", "10.0.0."])
def test_default_vnodes_keep_100_nodes_within_115_percent(prefix: str) -> None:
    ring = HashRing([f"{prefix}{i}" for i in range(100)])
    assert ring.vnodes == DEFAULT_VNODES
    get = ring.get_node
    counts = Counter(get(f"user:{i}") for i in range(1_000_000))
    assert len(counts) == 100
    assert max(counts.values()) / (1_000_000 / 100) <= 1.15
    assert max(ring.shares().values()) * 100 <= 1.15


def test_weights_scale_shares() -> None:
    ring = HashRing({"small": 1.0, "big": 3.0})
    shares = ring.shares()
    assert math.isclose(sum(shares.values()), 1.0)
    assert 0.68 < shares["big"] < 0.82


# -- minimal disruption --------------------------------------------------------------------------


@given(node_sets, node_names)
def test_adding_a_node_moves_keys_only_to_it(nodes: list[str], extra: str) -> None:
    if extra in nodes:
        return
    before = HashRing(nodes, vnodes=50)
    after = HashRing(nodes, vnodes=50)
    after.add_node(extra)
    old, new = mapping(before, SAMPLE_KEYS[:500]), mapping(after, SAMPLE_KEYS[:500])
    assert all(b in (a, extra) for a, b in zip(old, new, strict=True))
    after.remove_node(extra)
    assert mapping(after, SAMPLE_KEYS[:500]) == old
    assert after.intervals() == before.intervals()


def test_adding_a_node_moves_about_one_nth() -> None:
    nodes = [f"n{i}" for i in range(20)]
    before, after = HashRing(nodes), HashRing(nodes)
    after.add_node("n20")
    moved = sum(a != b for a, b in zip(mapping(before), mapping(after), strict=True))
    assert abs(moved / len(SAMPLE_KEYS) - 1 / 21) < 0.02


@given(node_sets, st.floats(min_value=0.1, max_value=5.0))
def test_weight_change_moves_nothing_between_the_others(nodes: list[str], weight: float) -> None:
    before = HashRing(nodes, vnodes=40)
    after = HashRing(nodes, vnodes=40)
    target = nodes[0]
    after.add_node(target, weight)
    for a, b in zip(
        mapping(before, SAMPLE_KEYS[:500]), mapping(after, SAMPLE_KEYS[:500]), strict=True
    ):
        assert a == b or target in (a, b)
    assert after.nodes[target] == weight


# -- preference lists --------------------------------------------------------------------------


@given(node_sets, some_keys, st.integers(min_value=1, max_value=10))
def test_preference_list_invariants(nodes: list[str], sample: list[str], n: int) -> None:
    ring = HashRing(nodes, vnodes=30)
    for key in sample:
        prefs = ring.get_nodes(key, n)
        assert len(prefs) == min(n, len(nodes))
        assert len(set(prefs)) == len(prefs)
        assert prefs[0] == ring.get_node(key)
        assert set(prefs) <= set(nodes)
        assert ring.get_nodes(key, max(1, n - 1)) == prefs[: max(1, n - 1)]
        assert ring.get_nodes(key, n) == prefs  # again: may come from the cache
        assert prefs == _walk(ring, ring.key_hash(key), min(n, len(nodes)))


def test_preference_list_survives_the_loss_of_the_primary() -> None:
    nodes = [f"n{i}" for i in range(8)]
    ring = HashRing(nodes)
    for key in SAMPLE_KEYS[:300]:
        first, second = ring.get_nodes(key, 2)
        smaller = HashRing(set(nodes) - {first})
        assert smaller.get_node(key) == second


# -- diff --------------------------------------------------------------------------------------


@given(node_sets, node_sets, some_keys)
def test_diff_explains_exactly_the_moved_keys(
    a: list[str], b: list[str], sample: list[str]
) -> None:
    before, after = HashRing(a, vnodes=25), HashRing(b, vnodes=25)
    moves = before.diff(after)
    for m in moves:
        assert isinstance(m, Move)
        assert -1 <= m.start < m.end <= HASH_SPACE - 1
        assert m.source != m.target
    assert all(x.end <= y.start for x, y in itertools.pairwise(moves))
    for key in [*sample, *SAMPLE_KEYS[:300]]:
        h = before.key_hash(key)
        hits = [m for m in moves if m.contains(h)]
        src, dst = before.get_node(key), after.get_node(key)
        if src == dst:
            assert hits == []
        else:
            assert [(m.source, m.target) for m in hits] == [(src, dst)]


def test_diff_fraction_matches_the_new_nodes_share() -> None:
    before = HashRing([f"n{i}" for i in range(10)])
    after = HashRing([f"n{i}" for i in range(11)])
    moves = before.diff(after)
    assert {m.target for m in moves} == {"n10"}
    assert math.isclose(sum(m.fraction for m in moves), after.shares()["n10"], rel_tol=1e-9)
    assert before.diff(before.copy()) == []


def test_diff_needs_the_same_key_space() -> None:
    with pytest.raises(ValueError, match="ketama"):
        HashRing(["a"]).diff(HashRing(["a"], hash="ketama"))
    with pytest.raises(EmptyRingError):
        HashRing(["a"]).diff(HashRing())


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [1, None, 1.5, ("a",), bytearray(b"a"), memoryview(b"a"), ["k"]])
def test_keys_must_be_str_or_bytes(key: object) -> None:
    ring = HashRing(["a", "b"])
    with pytest.raises(TypeError, match="key must be str or bytes"):
        ring.get_node(key)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key must be str or bytes"):
        ring.get_nodes(key, 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key must be str or bytes"):
        HashRing().get_node(key)  # type: ignore[arg-type]


def test_lone_surrogates_raise_instead_of_crashing() -> None:
    ring = HashRing(["a", "b"])
    with pytest.raises(UnicodeEncodeError):
        ring.get_node("\ud800")
    assert ring.get_node("ok") in ("a", "b")


class Region(enum.StrEnum):
    EU = "eu-west"


@pytest.mark.parametrize("mode", ["mmh3", "ketama"])
def test_str_subclass_keys_hash_like_str(mode: str) -> None:
    ring = HashRing(["a", "b", "c"], hash=mode)  # type: ignore[arg-type]
    assert ring.get_node(Region.EU) == ring.get_node("eu-west")
    assert ring.get_nodes(Region.EU, 2) == ring.get_nodes("eu-west", 2)


def test_str_and_bytes_keys_agree() -> None:
    ring = HashRing(["a", "b", "c"])
    for key in ["plain", "é", "键🔑", "{x}\n"]:
        assert ring.get_node(key) == ring.get_node(key.encode())


def test_empty_ring_lookup_raises_a_lookup_error() -> None:
    ring = HashRing()
    for call in (lambda: ring.get_node("k"), lambda: ring.get_nodes("k", 2)):
        with pytest.raises(EmptyRingError) as info:
            call()
        assert isinstance(info.value, LookupError)
        assert isinstance(info.value, DsprimsError)
    ring.add_node("a")
    assert ring.get_node("k") == "a"
    ring.remove_node("a")
    with pytest.raises(LookupError):
        ring.get_node("k")


@pytest.mark.parametrize("weight", [0, -1, float("nan"), float("inf"), -0.0])
def test_bad_weights_are_configuration_errors(weight: float) -> None:
    with pytest.raises(ConfigurationError, match="weight"):
        HashRing({"a": weight})
    ring = HashRing(["a"])
    with pytest.raises(ConfigurationError, match="weight"):
        ring.add_node("b", weight)
    assert list(ring.nodes) == ["a"]


def test_bad_parameters() -> None:
    with pytest.raises(ConfigurationError, match="vnodes"):
        HashRing(["a"], vnodes=0)
    with pytest.raises(TypeError, match="vnodes"):
        HashRing(["a"], vnodes=True)
    with pytest.raises(ConfigurationError, match="hash"):
        HashRing(["a"], hash="md5")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="twice"):
        HashRing(["a", "a"])
    with pytest.raises(ConfigurationError, match="empty"):
        HashRing([""])
    with pytest.raises(TypeError, match="single string"):
        HashRing("abc")
    with pytest.raises(TypeError, match="node name"):
        HashRing([1])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="weight"):
        HashRing({"a": "1"})
    with pytest.raises(ValueError, match="n must be"):
        HashRing(["a"]).get_nodes("k", 0)
    with pytest.raises(KeyError):
        HashRing(["a"]).remove_node("b")


# -- container protocol and copies -----------------------------------------------------------


def test_container_protocol() -> None:
    ring = HashRing({"a": 1.0, "b": 2.0})
    assert len(ring) == 2
    assert "a" in ring
    assert "c" not in ring
    assert dict(ring.nodes) == {"a": 1.0, "b": 2.0}
    assert sorted(ring) == ["a", "b"]
    ring.add_node("a", 1.0)  # same weight: no change
    assert dict(ring.nodes) == {"a": 1.0, "b": 2.0}
    with pytest.raises(TypeError):
        ring.nodes["c"] = 1.0  # type: ignore[index]
    assert "HashRing" in repr(ring)


def test_pickle_and_copy() -> None:
    ring = HashRing({"a": 1.0, "b": 2.0}, vnodes=64)
    clone = pickle.loads(pickle.dumps(ring))
    assert mapping(clone) == mapping(ring)
    twin = ring.copy()
    twin.add_node("c")
    assert "c" not in ring
    assert mapping(HashRing({"a": 1.0, "b": 2.0}, vnodes=64)) == mapping(ring)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_cached_preference_lists_match_the_reference_walk(n: int) -> None:
    """Few points and many keys: most lookups share a gap with an earlier key, so they are
    answered from the caches; every answer must still match the reference walk."""
    ring = HashRing({"a": 1.0, "b": 2.0, "c": 1.0, "d": 0.5, "e": 1.0}, vnodes=4)
    for key in SAMPLE_KEYS[:1500]:
        assert ring.get_nodes(key, n) == _walk(ring, ring.key_hash(key), n), key


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=6),
        st.sampled_from([0.01, 0.5, 1.0, 1.7, 3.0]),
        min_size=1,
        max_size=300,
    ),
    st.sampled_from([1, 2, 7, 40]),
)
def test_bulk_build_equals_the_per_point_build(weights: dict[str, float], vnodes: int) -> None:
    """The C-level build (packed float sort, big-integer bounds) against the per-point one,
    over any names (non-ASCII, more than 256 nodes so ranks take two bytes)."""
    try:
        expected = ring_module._build_default_reference(weights, vnodes)
    except UnicodeEncodeError:
        return  # lone surrogates are rejected before any build runs
    assert ring_module._build_default(weights, vnodes) == expected


@pytest.mark.parametrize("vnodes", [1, 30_000])
def test_bulk_build_resolves_ties_like_the_per_point_build(vnodes: int) -> None:
    weights = dict.fromkeys(["w", "x", "y", "z"], 1.0)
    bulk = ring_module._build_default(weights, vnodes)
    assert bulk == ring_module._build_default_reference(weights, vnodes)
    assert bool(bulk.shadow) == (vnodes > 1)


@given(st.integers(min_value=0, max_value=HASH_SPACE - 1), st.integers(min_value=1, max_value=6))
def test_walk_ranges_hold_one_preference_list(key_hash: int, n: int) -> None:
    """The cache trusts _walk's range: every hash in it must get the same list."""
    ring = HashRing({"a": 1.0, "b": 2.0, "c": 1.0, "d": 0.5}, vnodes=5)
    snap = ring._snap
    start, end, prefs = ring_module._walk(snap.points, snap.names, snap.labels, n, key_hash)
    assert start <= key_hash < end
    assert list(prefs) == _walk(ring, key_hash, n)
    for edge in (start, end - 1, (start + end) // 2):
        assert ring_module._walk(snap.points, snap.names, snap.labels, n, edge)[2] == prefs


@given(
    st.lists(st.sampled_from([*"wxyz", "node-1", "node-2", "é", "a1"]), min_size=2, unique=True),
    st.sampled_from([1, 3, 40, 3000]),
    st.sampled_from([0.5, 1.0, 2.0]),
)
def test_splicing_a_node_in_and_out_equals_a_fresh_build(
    nodes: list[str], vnodes: int, weight: float
) -> None:
    """add_node/remove_node splice the old arrays; the result must be the ring built afresh
    (at 3,000 points per node, 'w'..'z' share points, so ties are spliced too)."""
    extra, rest = nodes[0], dict.fromkeys(nodes[1:], 1.0)
    before = ring_module._build_default(rest, vnodes)
    added = ring_module._add_default(before, extra, weight, vnodes)
    assert canonical(added) == canonical(
        ring_module._build_default({**rest, extra: weight}, vnodes)
    )
    assert ring_module._remove_default(added, extra, vnodes) == before


def canonical(snap: ring_module._Snapshot) -> tuple[object, ...]:
    """A snapshot with every node rank replaced by the node's name (ranks depend on history)."""
    names = [snap.labels[r] for r in snap.names]
    return (
        snap.weights,
        list(snap.ends),
        ring_module._owner_names(snap),
        list(snap.points),
        names,
        snap.shadow,
    )


@given(
    st.lists(
        st.tuples(st.sampled_from([*"abcdwxyz", "node-1", "é"]), st.sampled_from([0.5, 1.0])),
        min_size=1,
        max_size=12,
    ),
    st.sampled_from([2, 40, 3000]),
)
def test_any_history_of_splices_equals_a_fresh_build(
    steps: list[tuple[str, float]], vnodes: int
) -> None:
    """Removed nodes leave unused ranks that later nodes take: after any sequence of adds,
    weight changes and removes, the ring is the one built afresh from its final weights."""
    ring = HashRing({"x": 1.0, "y": 1.0, "z": 1.0}, vnodes=vnodes)
    peak = len(ring)
    for name, weight in steps:
        if name in ring and len(ring) > 1 and weight == 0.5:
            ring.remove_node(name)
        else:
            ring.add_node(name, weight)
        peak = max(peak, len(ring))
        labels = ring._snap.labels
        assert len(labels) <= peak  # unused ranks are reused
        assert labels[-1]  # and never trail
        assert sorted(filter(None, labels)) == sorted(ring.nodes)
    fresh = ring_module._build_default(dict(ring.nodes), vnodes)
    assert canonical(ring._snap) == canonical(fresh)
