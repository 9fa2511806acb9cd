"""DVVSet: the scenarios of Almeida et al. 2014 and a property check against a dot-set model."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsprims import DVVSet, VectorClock


def test_concurrent_writes_with_the_same_context_become_siblings() -> None:
    s0: DVVSet[str] = DVVSet()
    s1 = s0.put("v1", None, "A")
    assert s1.values == ["v1"]
    assert s1.context() == VectorClock({"A": 1})
    ctx = s1.context()
    s2 = s1.put("v2", ctx, "A")
    assert s2.values == ["v2"]
    s3 = s2.put("v3", ctx, "A")  # stale context: v2 survives as a sibling
    assert sorted(s3.values) == ["v2", "v3"]
    assert sorted(s3.dots()) == [(("A", 2), "v2"), (("A", 3), "v3")]
    s4 = s3.put("v4", s3.context(), "A")
    assert s4.values == ["v4"]
    assert s4.context() == VectorClock({"A": 4})


def test_blind_write_is_a_sibling_of_everything() -> None:
    s = DVVSet[str]().put("v1", None, "A").put("v2", None, "A")
    assert sorted(s.values) == ["v1", "v2"]
    assert len(s) == 2


def test_writes_on_different_nodes_then_merge() -> None:
    base = DVVSet[str]().put("v0", None, "A")
    ctx = base.context()
    on_a = base.put("from-a", ctx, "A")
    on_b = base.put("from-b", ctx, "B")  # B has replicated base, then took a write
    merged = on_a.merge(on_b)
    assert sorted(merged.values) == ["from-a", "from-b"]
    assert merged == on_b.merge(on_a)
    assert merged.merge(merged) == merged
    assert merged.context() == VectorClock({"A": 2, "B": 1})
    resolved = merged.resolve(lambda values: "+".join(sorted(values)), "B")
    assert resolved.values == ["from-a+from-b"]
    # An old replica merged back in brings nothing obsolete back.
    assert resolved.merge(base).values == ["from-a+from-b"]
    assert resolved.merge(on_a).values == ["from-a+from-b"]


def test_new_and_update_directly() -> None:
    write = DVVSet.new("x", VectorClock({"A": 3}))
    assert write.values == ["x"]
    assert write.update("A").dots() == [(("A", 4), "x")]
    with pytest.raises(ValueError, match=r"DVVSet\.new"):
        DVVSet[str]().update("A")
    with pytest.raises(TypeError, match="context"):
        DVVSet.new("x", {"A": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="node"):
        write.update(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="replica"):
        write.update("A", {"A": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="other"):
        write.merge(VectorClock())  # type: ignore[arg-type]
    assert DVVSet.new("x").merge(DVVSet.new("y")).values == ["x", "y"]
    assert DVVSet.new("x").merge(DVVSet.new("x")).values == ["x"]
    assert "DVVSet(" in repr(write)
    assert write != "x"


def test_unhashable_values_are_fine() -> None:
    s = DVVSet[dict[str, int]]().put({"a": 1}, None, "A").put({"b": 2}, None, "A")
    assert s.values == [{"b": 2}, {"a": 1}]


# -- property: DVVSet agrees with the dot-set model --


@dataclass
class Model:
    """Causal histories as explicit dot sets (the specification DVVSet compresses)."""

    seen: set[tuple[str, int]] = field(default_factory=set)
    live: dict[tuple[str, int], str] = field(default_factory=dict)

    def put(self, value: str, context: set[tuple[str, int]], node: str) -> Model:
        known = self.seen | context
        dot = (node, 1 + max((n for i, n in known if i == node), default=0))
        live = {d: v for d, v in self.live.items() if d not in context}
        live[dot] = value
        return Model(known | {dot}, live)

    def merge(self, other: Model) -> Model:
        live = {d: v for d, v in self.live.items() if d in other.live or d not in other.seen}
        live.update({d: v for d, v in other.live.items() if d in self.live or d not in self.seen})
        return Model(self.seen | other.seen, live)


def dots_of(context: VectorClock) -> set[tuple[str, int]]:
    return {(node, k) for node, n in context.items() for k in range(1, n + 1)}


ops = st.lists(
    st.tuples(
        st.sampled_from(["put", "put", "merge", "read"]),
        st.integers(0, 2),  # replica
        st.integers(0, 2),  # other replica / node for the put
        st.integers(0, 10**6),  # which earlier read's context a put uses (or none)
    ),
    max_size=40,
)


@given(ops)
def test_dvvset_matches_the_dot_set_model(steps: list[tuple[str, int, int, int]]) -> None:
    replicas: list[DVVSet[str]] = [DVVSet() for _ in range(3)]
    models = [Model() for _ in range(3)]
    reads: list[VectorClock] = []
    counter = 0
    for kind, r, other, pick in steps:
        if kind == "read":
            reads.append(replicas[r].context())
        elif kind == "merge":
            replicas[r] = replicas[r].merge(replicas[other])
            models[r] = models[r].merge(models[other])
        else:
            counter += 1
            value = f"v{counter}"
            node = "ABC"[r]
            choice = pick % (len(reads) + 1)
            context = None if choice == len(reads) else reads[choice]
            # A node coordinates only with its own replica's state, so dots stay unique.
            replicas[r] = replicas[r].put(value, context, node)
            models[r] = models[r].put(value, set() if context is None else dots_of(context), node)
        for state, model in zip(replicas, models, strict=True):
            assert sorted(state.values) == sorted(model.live.values())
            assert dict(state.dots()) == model.live
            assert dots_of(state.context()) == model.seen
