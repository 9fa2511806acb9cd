"""Hypothesis properties of the three clocks (issue 6, Acceptance).

* HLC: strictly monotonic under arbitrary physical clocks; ``l >= pt`` and ``l - pt`` bounded by
  the skew between nodes; causality (e -> f implies hlc(e) < hlc(f)); the shell computes exactly
  what folding the pure rules computes; a refused update changes nothing.
* Vector clocks characterise happens-before exactly, CONCURRENT included; merge is commutative,
  associative, idempotent and least; compare and the operators agree with a dict reference.
* Encodings round-trip and preserve order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st

from dsprims import (
    ClockSkewError,
    HLCTimestamp,
    HybridLogicalClock,
    LamportClock,
    ManualClock,
    Ordering,
    VectorClock,
    VectorClockNode,
)
from dsprims.clocks import MAX_LOGICAL, MAX_WALL_NS, hlc_receive, hlc_send
from dsprims.clocks.vector import MAX_COUNTER

# -- a simulated message-passing system --


@dataclass
class Event:
    node: int
    pt: int
    hlc: HLCTimestamp
    vc: VectorClock
    lamport: int
    past: frozenset[int]  # ids of the events that happened before this one


@dataclass
class Node:
    clock: ManualClock
    hlc: HybridLogicalClock
    vc: VectorClockNode
    lamport: LamportClock
    last: int | None = None
    events: list[int] = field(default_factory=list)


step = st.tuples(
    st.integers(0, 3),  # node (modulo the node count)
    st.sampled_from(["local", "send", "recv"]),
    st.integers(0, 40),  # true time advance, ns
    st.integers(0, 10**6),  # which in-flight message a recv takes
)


@st.composite
def systems(draw: st.DrawFn) -> tuple[list[int], list[tuple[int, str, int, int]]]:
    n = draw(st.integers(2, 4))
    offsets = draw(st.lists(st.integers(0, 100), min_size=n, max_size=n))
    return offsets, draw(st.lists(step, max_size=50))


def run_system(offsets: list[int], steps: list[tuple[int, str, int, int]]) -> list[Event]:
    nodes = []
    for i, _ in enumerate(offsets):
        physical = ManualClock()
        nodes.append(
            Node(
                physical,
                HybridLogicalClock(clock=physical, max_offset=0),
                VectorClockNode(f"n{i}"),
                LamportClock(),
            )
        )
    events: list[Event] = []
    in_flight: list[tuple[int, HLCTimestamp, VectorClock, int]] = []  # (send event id, ...)
    true_time = 1_000
    for raw_node, kind, advance, pick in steps:
        true_time += advance
        me = raw_node % len(nodes)
        node = nodes[me]
        pt = true_time + offsets[me]
        node.clock.set_wall_ns(pt)
        past = set() if node.last is None else {node.last, *events[node.last].past}
        if kind == "recv" and in_flight:
            sent, hlc_ts, vc_ts, lamport_ts = in_flight.pop(pick % len(in_flight))
            past |= {sent, *events[sent].past}
            stamp = node.hlc.update(hlc_ts)
            vc = node.vc.receive(vc_ts)
            lamport = node.lamport.receive(lamport_ts)
        else:
            stamp = node.hlc.now()
            vc = node.vc.tick()
            lamport = node.lamport.tick()
        event_id = len(events)
        events.append(Event(me, pt, stamp, vc, lamport, frozenset(past)))
        node.last = event_id
        if kind == "send":
            in_flight.append((event_id, stamp, vc, lamport))
    return events


@given(systems())
def test_clocks_respect_and_vector_clocks_characterise_happens_before(
    system: tuple[list[int], list[tuple[int, str, int, int]]],
) -> None:
    offsets, steps = system
    events = run_system(offsets, steps)
    for f_id, f in enumerate(events):
        for e_id, e in enumerate(events):
            if e_id == f_id:
                continue
            ordering = e.vc.compare(f.vc)
            if e_id in f.past:
                assert e.hlc < f.hlc
                assert e.lamport < f.lamport
                assert ordering is Ordering.BEFORE
                assert e.vc < f.vc
            elif f_id in e.past:
                assert ordering is Ordering.AFTER
            else:
                assert ordering is Ordering.CONCURRENT
                assert not e.vc <= f.vc
                assert not f.vc <= e.vc


@given(systems())
def test_hlc_stays_within_the_skew_of_physical_time(
    system: tuple[list[int], list[tuple[int, str, int, int]]],
) -> None:
    offsets, steps = system
    skew = max(offsets) - min(offsets)
    for event in run_system(offsets, steps):
        assert event.hlc.wall_ns >= event.pt
        assert event.hlc.wall_ns - event.pt <= skew


# -- HLC under arbitrary physical clocks --

walls = st.integers(0, 2**62)
timestamps = st.builds(HLCTimestamp, st.integers(0, MAX_WALL_NS), st.integers(0, MAX_LOGICAL))
operations = st.lists(
    st.tuples(
        walls,  # the physical clock, anywhere: forwards, backwards, frozen
        st.one_of(st.none(), st.builds(HLCTimestamp, walls, st.integers(0, MAX_LOGICAL))),
    ),
    max_size=40,
)


@given(operations, st.sampled_from([0.0, 1e-6, 0.5, 30.0]))
def test_hlc_is_strictly_monotonic_and_equals_the_pure_rules(
    ops: list[tuple[int, HLCTimestamp | None]], max_offset: float
) -> None:
    physical = ManualClock()
    clock = HybridLogicalClock(clock=physical, max_offset=max_offset)
    max_offset_ns = round(max_offset * 1e9)
    model = HLCTimestamp(0, 0)
    previous: HLCTimestamp | None = None
    for pt, remote in ops:
        physical.set_wall_ns(pt)
        if remote is None:
            stamp = clock.now()
            model = hlc_send(model, pt)
        else:
            try:
                expected = hlc_receive(model, pt, remote, max_offset_ns)
            except ClockSkewError:
                before = clock.last
                try:
                    clock.update(remote)
                except ClockSkewError:
                    assert clock.last == before
                    assert max_offset_ns
                    assert remote.wall_ns - pt > max_offset_ns
                    continue
                raise AssertionError("the shell accepted what the rule refuses") from None
            stamp = clock.update(remote)
            model = expected
            assert stamp > remote
        assert stamp == model
        assert stamp.wall_ns >= pt
        # The inlined common cases record only l (see HybridLogicalClock._state): the state
        # they leave must read back as the rule's, for the next event and for stats.
        assert clock.last == model
        stats = clock.stats()
        assert stats.last == model
        assert stats.lead_ns == model.wall_ns - pt
        if previous is not None:
            assert stamp > previous
        previous = stamp


# -- vector clock lattice --

counts = st.one_of(st.integers(0, 4), st.sampled_from([MAX_COUNTER, MAX_COUNTER - 1, 2**40]))
clocks = st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e"]), counts).map(VectorClock)


def reference_compare(x: VectorClock, y: VectorClock) -> Ordering:
    nodes = set(x.nodes) | set(y.nodes)
    le = all(x[n] <= y[n] for n in nodes)
    ge = all(x[n] >= y[n] for n in nodes)
    if le and ge:
        return Ordering.EQUAL
    if le:
        return Ordering.BEFORE
    if ge:
        return Ordering.AFTER
    return Ordering.CONCURRENT


many_nodes = [f"node-{i:02d}" for i in range(30)]
wide_clocks = st.dictionaries(st.sampled_from(many_nodes), counts, max_size=30).map(VectorClock)


@given(wide_clocks, wide_clocks)
def test_wide_clocks_merge_and_compare_like_the_reference(a: VectorClock, b: VectorClock) -> None:
    # Up to 30 nodes: the realignment paths for many missing nodes, not just a few.
    assert a.compare(b) is reference_compare(a, b)
    assert a.merge(b).to_dict() == {
        n: max(a[n], b[n]) for n in set(a.nodes) | set(b.nodes) if max(a[n], b[n])
    }
    superset = a.merge(b)
    assert a <= superset
    assert b <= superset
    assert superset.merge(a) == superset


@given(clocks, clocks, clocks)
def test_merge_is_a_least_upper_bound(a: VectorClock, b: VectorClock, c: VectorClock) -> None:
    ab = a.merge(b)
    assert ab == b.merge(a)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(a) == a
    assert ab >= a
    assert ab >= b
    assert ab.to_dict() == {
        n: max(a[n], b[n]) for n in set(a.nodes) | set(b.nodes) if max(a[n], b[n])
    }
    if c >= a and c >= b:
        assert c >= ab


@given(clocks, clocks)
def test_compare_and_operators_agree_with_the_reference(a: VectorClock, b: VectorClock) -> None:
    ordering = a.compare(b)
    assert ordering is reference_compare(a, b)
    assert (a == b) is (ordering is Ordering.EQUAL)
    assert (a < b) is (ordering is Ordering.BEFORE)
    assert (a > b) is (ordering is Ordering.AFTER)
    assert (a <= b) is (ordering in (Ordering.BEFORE, Ordering.EQUAL))
    assert (a >= b) is (ordering in (Ordering.AFTER, Ordering.EQUAL))
    assert (
        b.compare(a)
        is {
            Ordering.BEFORE: Ordering.AFTER,
            Ordering.AFTER: Ordering.BEFORE,
            Ordering.EQUAL: Ordering.EQUAL,
            Ordering.CONCURRENT: Ordering.CONCURRENT,
        }[ordering]
    )
    if a == b:
        assert hash(a) == hash(b)


@given(clocks, st.sampled_from(["a", "c", "e", "new"]))
def test_increment_and_round_trips(a: VectorClock, node: str) -> None:
    if a[node] < MAX_COUNTER:
        bigger = a.increment(node)
        assert bigger > a
        assert bigger[node] == a[node] + 1
        assert all(bigger[n] == a[n] for n in a.nodes if n != node)
    assert VectorClock.from_dict(a.to_dict()) == a
    assert VectorClock.from_json(a.to_json()) == a


# -- encodings --

same_wall_pairs = st.integers(0, MAX_WALL_NS).flatmap(
    lambda w: st.tuples(
        st.builds(HLCTimestamp, st.just(w), st.integers(0, MAX_LOGICAL)),
        st.builds(HLCTimestamp, st.just(w), st.integers(0, MAX_LOGICAL)),
    )
)
pairs = st.one_of(st.tuples(timestamps, timestamps), same_wall_pairs)


@given(pairs)
def test_encodings_round_trip_and_preserve_order(pair: tuple[HLCTimestamp, HLCTimestamp]) -> None:
    a, b = pair
    assert HLCTimestamp.from_bytes(a.to_bytes()) == a
    assert HLCTimestamp.parse(a.to_string()) == a
    assert len(a.to_bytes()) == 12
    assert (a.to_bytes() < b.to_bytes()) is (a < b)
    assert (a.to_string() < b.to_string()) is (a < b)
    if a <= b:
        assert a.to_int() <= b.to_int()
    assert 0 <= a.to_int() < 2**64
    assert HLCTimestamp.from_int(a.to_int()) <= a


@given(st.integers(0, MAX_WALL_NS // 1_000_000), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_int_form_is_exact_and_strict_on_milliseconds(ms: int, x: int, y: int) -> None:
    a = HLCTimestamp(ms * 1_000_000, x)
    b = HLCTimestamp(ms * 1_000_000, y)
    assert HLCTimestamp.from_int(a.to_int()) == a
    assert (a.to_int() < b.to_int()) is (a < b)


# -- the pure rules against a literal transcription of the paper --


def paper_send(l: int, c: int, pt: int) -> tuple[int, int]:  # noqa: E741 - the paper's names
    l_new = max(l, pt)
    return (l_new, c + 1 if l_new == l else 0)


def paper_receive(l: int, c: int, pt: int, lm: int, cm: int) -> tuple[int, int]:  # noqa: E741
    l_new = max(l, lm, pt)
    if l_new == l == lm:
        return (l_new, max(c, cm) + 1)
    if l_new == l:
        return (l_new, c + 1)
    if l_new == lm:
        return (l_new, cm + 1)
    return (l_new, 0)


small_walls = st.integers(0, 20)  # small values make the equal-wall cases frequent
small_logicals = st.integers(0, 5)


@given(small_walls, small_logicals, small_walls, small_walls, small_logicals)
def test_pure_rules_are_the_papers_rules(l: int, c: int, pt: int, lm: int, cm: int) -> None:  # noqa: E741
    last = HLCTimestamp(l, c)
    assert tuple(hlc_send(last, pt)) == paper_send(l, c, pt)
    assert tuple(hlc_receive(last, pt, HLCTimestamp(lm, cm), 0)) == paper_receive(l, c, pt, lm, cm)
    # With the guard on, the rule either refuses (remote too far ahead) or agrees.
    if lm - pt > 3:
        try:
            hlc_receive(last, pt, HLCTimestamp(lm, cm), 3)
        except ClockSkewError:
            pass
        else:
            raise AssertionError("a remote more than max_offset ahead was accepted")
    else:
        assert tuple(hlc_receive(last, pt, HLCTimestamp(lm, cm), 3)) == paper_receive(
            l, c, pt, lm, cm
        )


@given(small_walls, small_walls, small_walls, st.sampled_from([0, 1, MAX_LOGICAL - 1]))
def test_counter_carries_where_the_paper_would_overflow(
    l: int,  # noqa: E741
    pt: int,
    lm: int,
    cm: int,
) -> None:
    last = HLCTimestamp(l, MAX_LOGICAL)
    expected_l, expected_c = paper_receive(l, MAX_LOGICAL, pt, lm, cm)
    got = hlc_receive(last, pt, HLCTimestamp(lm, cm), 0)
    if expected_c > MAX_LOGICAL:
        assert tuple(got) == (expected_l + 1, 0)
    else:
        assert tuple(got) == (expected_l, expected_c)
    assert got > last
