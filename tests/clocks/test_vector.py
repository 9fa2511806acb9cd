"""VectorClock and VectorClockNode: the partial order, the lattice, encodings, pruning."""

from __future__ import annotations

import json
import pickle
import threading

import pytest

from dsprims import (
    ConfigurationError,
    Ordering,
    PrunePolicy,
    Stamped,
    VectorClock,
    VectorClockNode,
)
from dsprims.clocks.vector import MAX_COUNTER


def vc(**counts: int) -> VectorClock:
    return VectorClock(counts)


def test_missing_entries_are_zero_and_not_stored() -> None:
    assert VectorClock({"a": 0}) == VectorClock()
    assert vc(a=1, b=0) == vc(a=1)
    assert vc(a=1)["b"] == 0
    assert vc(a=1).get("a") == 1
    assert len(vc(a=1, b=0)) == 1
    assert "b" not in vc(a=1, b=0)
    assert "a" in vc(a=1)
    assert 3 not in vc(a=1)
    assert list(vc(b=2, a=1)) == ["a", "b"]
    assert vc(b=2, a=1).nodes == ("a", "b")
    assert dict(vc(b=2, a=1).items()) == {"a": 1, "b": 2}
    assert vc(a=1)[3] == 0  # type: ignore[arg-type]


def test_compare_all_four_orderings() -> None:
    a = vc(a=1, b=2)
    assert a.compare(vc(a=1, b=2)) is Ordering.EQUAL
    assert a.compare(vc(a=1, b=3)) is Ordering.BEFORE
    assert a.compare(vc(a=1, b=2, c=1)) is Ordering.BEFORE
    assert a.compare(vc(a=1)) is Ordering.AFTER
    assert a.compare(vc(b=2)) is Ordering.AFTER
    assert a.compare(vc(a=2, b=1)) is Ordering.CONCURRENT
    assert a.compare(vc(c=1)) is Ordering.CONCURRENT
    assert a.compare(vc(a=1, c=1)) is Ordering.CONCURRENT
    assert a.compare(vc(a=1, b=3, c=1)) is Ordering.BEFORE
    assert vc(a=2, b=3).compare(vc(a=1, b=3, c=1)) is Ordering.CONCURRENT
    assert vc(a=1, b=3, c=1).compare(vc(a=2, b=3)) is Ordering.CONCURRENT
    assert VectorClock().compare(vc(x=1)) is Ordering.BEFORE
    assert vc(x=1).compare(VectorClock()) is Ordering.AFTER


def test_operators_are_the_partial_order_without_tie_breaking() -> None:
    a, b = vc(a=2, b=1), vc(a=1, b=2)
    for x, y in [(a, b), (b, a)]:
        assert not x < y
        assert not x > y
        assert not x <= y
        assert not x >= y
        assert x != y
    assert vc(a=1) < vc(a=2) <= vc(a=2)
    assert vc(a=2) > vc(a=1) >= vc(a=1)
    assert not vc(a=1) < vc(a=1)
    assert vc(a=1) < vc(a=1, b=1)
    assert vc(a=1, b=1) > vc(b=1)
    assert vc(a=1).descends(vc())
    assert not vc().descends(vc(a=1))
    assert a.concurrent_with(b)
    assert not a.concurrent_with(a)
    assert vc(a=1) != "a"
    with pytest.raises(TypeError):
        _ = vc(a=1) < {"a": 2}


def test_merge_is_pointwise_max() -> None:
    assert vc(a=1, b=5).merge(vc(a=3, c=2)) == vc(a=3, b=5, c=2)
    assert vc(a=1, b=5).merge(vc(a=3, b=2)) == vc(a=3, b=5)
    assert vc(a=1).merge(VectorClock()) == vc(a=1)
    assert VectorClock().merge(vc(a=1)) == vc(a=1)
    with pytest.raises(TypeError, match="other"):
        vc(a=1).merge({"a": 2})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="other"):
        vc(a=1).compare({"a": 2})  # type: ignore[arg-type]


def test_increment() -> None:
    a = VectorClock().increment("b").increment("a").increment("b").increment("c")
    assert a.to_dict() == {"a": 1, "b": 2, "c": 1}
    assert a.increment("a") > a
    assert vc(a=1).increment("a") == vc(a=2)
    with pytest.raises(TypeError, match="node"):
        vc(a=1).increment(1)  # type: ignore[arg-type]

    class Name(str):
        __slots__ = ()

    assert vc(a=1).increment(Name("a")) == vc(a=2)


def test_counters_are_bounded_by_the_packing() -> None:
    top = VectorClock({"a": MAX_COUNTER, "b": 1})
    assert top["a"] == MAX_COUNTER
    assert top.merge(vc(a=5, b=7)) == VectorClock({"a": MAX_COUNTER, "b": 7})
    assert vc(a=5, b=7) < VectorClock({"a": MAX_COUNTER, "b": 7})
    with pytest.raises(OverflowError):
        top.increment("a")
    with pytest.raises(ValueError, match="counter"):
        VectorClock({"a": MAX_COUNTER + 1})


def test_validation() -> None:
    with pytest.raises(TypeError, match="node ids"):
        VectorClock({1: 2})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="counter"):
        VectorClock({"a": 1.0})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="counter"):
        VectorClock({"a": True})
    with pytest.raises(ValueError, match="counter"):
        VectorClock({"a": -1})
    with pytest.raises(TypeError, match="data"):
        VectorClock.from_dict([("a", 1)])  # type: ignore[arg-type]
    assert VectorClock([("a", 1), ("b", 2), ("a", 0)]) == vc(b=2)


def test_dict_json_pickle_hash() -> None:
    a = vc(zeta=3, alpha=1, mid=2)
    assert a.to_dict() == {"alpha": 1, "mid": 2, "zeta": 3}
    assert VectorClock.from_dict(a.to_dict()) == a
    assert a.to_json() == '{"alpha":1,"mid":2,"zeta":3}'
    assert VectorClock.from_json(a.to_json()) == a
    assert VectorClock.from_json(a.to_json().encode()) == a
    assert VectorClock.from_json('{"ü":1}').to_json() == '{"ü":1}'
    with pytest.raises(ValueError, match="object"):
        VectorClock.from_json("[1]")
    with pytest.raises(json.JSONDecodeError):
        VectorClock.from_json("{")
    with pytest.raises(TypeError, match="counter"):
        VectorClock.from_json('{"a":1.5}')
    with pytest.raises(TypeError, match="text"):
        VectorClock.from_json(3)  # type: ignore[arg-type]
    copy = pickle.loads(pickle.dumps(a))
    assert copy == a
    assert hash(copy) == hash(a)
    assert {a: "x"}[vc(alpha=1, mid=2, zeta=3)] == "x"
    assert hash(VectorClock({"a": 0})) == hash(VectorClock())
    assert repr(vc(b=1, a=2)) == "VectorClock({'a': 2, 'b': 1})"


def test_riak_pruning() -> None:
    clock = VectorClock({f"n{i}": i + 1 for i in range(6)})
    stamps = {f"n{i}": 100.0 + i for i in range(6)}  # n0 is the least recently updated
    policy = PrunePolicy(small=2, big=4, young=5.0, old=50.0)
    # Too big: prune oldest first down to `big`, even though nothing is `old`.
    assert clock.prune(policy, stamps, now=110.0) == VectorClock(
        {"n2": 3, "n3": 4, "n4": 5, "n5": 6}
    )
    # The oldest entry is younger than `young`: nothing is pruned.
    assert clock.prune(policy, stamps, now=104.5) is clock
    assert clock.prune(PrunePolicy(small=2, big=4, young=20.0, old=50.0), stamps, 110.0) is clock
    # Old entries go even when the clock is not big, but never below `small`.
    assert clock.prune(policy, stamps, now=1_000.0).nodes == ("n4", "n5")
    # A clock within `small` is left alone.
    assert clock.prune(PrunePolicy(small=6, big=6), stamps, now=10**6) is clock
    with pytest.raises(ValueError, match="n5"):
        clock.prune(policy, {f"n{i}": 1.0 for i in range(5)}, now=10.0)


def test_prune_young_stops_pruning() -> None:
    clock = VectorClock({f"n{i}": 1 for i in range(6)})
    stamps = {f"n{i}": 100.0 + i for i in range(6)}
    policy = PrunePolicy(small=2, big=3, young=5.0, old=1_000.0)
    # At now=103 even the oldest entry (age 3) is younger than 5: nothing is pruned.
    assert clock.prune(policy, stamps, now=103.0) is clock
    # At now=106: n0 (6) and n1 (5) are old enough; n2 (age 4) stops the pruning.
    assert clock.prune(policy, stamps, now=106.0).nodes == ("n2", "n3", "n4", "n5")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"small": -1}, ConfigurationError),
        ({"small": 5, "big": 4}, ConfigurationError),
        ({"young": -1.0}, ConfigurationError),
        ({"old": float("nan")}, ConfigurationError),
        ({"small": 1.5}, TypeError),
        ({"old": "1"}, TypeError),
    ],
)
def test_prune_policy_validation(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error, match=next(iter(kwargs))):
        PrunePolicy(**kwargs)  # type: ignore[arg-type]


def test_node_message_helpers() -> None:
    alice, bob = VectorClockNode("alice"), VectorClockNode("bob")
    m1 = alice.stamp("hello")
    assert m1 == Stamped("hello", vc(alice=1))
    r1 = bob.receive_message(m1)
    assert r1 == Stamped("hello", vc(alice=1, bob=1))
    m2 = alice.stamp("again")  # concurrent with bob's receive
    assert m2.timestamp.compare(r1.timestamp) is Ordering.CONCURRENT
    assert bob.receive(m2.timestamp) == vc(alice=2, bob=2)
    assert bob.tick() == vc(alice=2, bob=3)
    assert bob.clock == vc(alice=2, bob=3)
    with pytest.raises(TypeError, match="message"):
        bob.receive_message(vc(a=1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="remote"):
        bob.receive({"a": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="node_id"):
        VectorClockNode(1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="start"):
        VectorClockNode("a", start={"a": 1})  # type: ignore[arg-type]
    assert VectorClockNode("a", start=vc(a=5)).tick() == vc(a=6)


def test_node_is_thread_safe() -> None:
    node = VectorClockNode("n")
    threads = [
        threading.Thread(target=lambda: [node.tick() for _ in range(2_000)]) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert node.clock == vc(n=8_000)


def test_large_clocks_beyond_the_cache_still_work() -> None:
    a = VectorClock({f"n{i:04d}": i + 1 for i in range(700)})
    b = a.increment("n0699").increment("zz")
    assert a < b
    assert a.merge(b) == b
    assert b.to_dict()["zz"] == 1
    assert b["n0699"] == 701
    assert a.compare(b.increment("n0000")) is Ordering.BEFORE
