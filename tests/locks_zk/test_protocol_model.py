"""Model check of the acquire protocol against a tiny in-memory model of ZooKeeper.

Several contenders run :func:`acquire_protocol` in an interleaving chosen by hypothesis; the
model applies creates, deletes and one-shot watches the way ZooKeeper does (one total order,
watches fire on delete). Holders release, some waiters give up (delete their node). Checked:
at most one holder at any time, grants in enrollment order among those that stayed, tokens
strictly increasing in grant order, every waiter that stays is eventually granted, and no
contender is ever woken by a node that is not its predecessor (no herd).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st

from dsprims.locks.zookeeper_core import (
    Action,
    AwaitChange,
    Enroll,
    Enrolled,
    Granted,
    ListContenders,
    Listing,
    Outcome,
    WatchPredecessor,
    acquire_protocol,
)

PARENT = "/lock"


@dataclass
class Model:
    nodes: dict[str, int] = field(default_factory=dict)  # name -> czxid
    seq: int = 0
    zxid: int = 100
    watches: dict[str, set[int]] = field(default_factory=dict)

    def create(self, prefix: str) -> tuple[str, int, bool]:
        self.zxid += 1
        name = f"{prefix}{self.seq:010d}"
        self.seq += 1
        self.nodes[name] = self.zxid
        return name, self.zxid, len(self.nodes) == 1

    def delete(self, name: str) -> set[int]:
        self.zxid += 1
        del self.nodes[name]
        return self.watches.pop(name, set())


@dataclass
class Contender:
    ident: int
    gen: Generator[Action, object, Outcome]
    action: Action | None = None
    node: str | None = None
    enrolled_at: int = -1
    woken: bool = False
    held: bool = False
    done: bool = False
    gave_up: bool = False


def run(schedule: list[tuple[int, str]], count: int) -> None:
    model = Model()
    people = [
        Contender(i, acquire_protocol(PARENT, f"owner{i:02d}", wait=True)) for i in range(count)
    ]
    for person in people:
        person.action = next(person.gen)
    grants: list[tuple[int, int]] = []  # (contender, token)
    enroll_order: list[int] = []

    def wake(watchers: set[int], deleted: str) -> None:
        for ident in watchers:
            watcher = people[ident]
            assert watcher.node is not None
            # No herd: only the contender right behind the deleted node was watching it.
            later = sorted(
                (n for n in model.nodes if n[-10:] > deleted[-10:]), key=lambda n: n[-10:]
            )
            assert (later and later[0] == watcher.node) or watcher.node not in model.nodes
            watcher.woken = True

    def step(person: Contender, move: str) -> None:
        if person.done:
            return
        if person.held:
            if move == "release":
                assert person.node is not None
                wake(model.delete(person.node), person.node)
                person.held, person.done = False, True
            return
        if move == "give_up" and person.node is not None:
            wake(model.delete(person.node), person.node)
            person.done, person.gave_up = True, True
            return
        action = person.action
        result: object = None
        if isinstance(action, Enroll):
            name, czxid, alone = model.create(action.prefix)
            person.node, person.enrolled_at = name, len(enroll_order)
            enroll_order.append(person.ident)
            result = Enrolled(f"{PARENT}/{name}", czxid, alone)
        elif isinstance(action, ListContenders):
            result = Listing(list(model.nodes))
        elif isinstance(action, WatchPredecessor):
            name = action.path.rsplit("/", 1)[1]
            result = name in model.nodes
            if result:
                model.watches.setdefault(name, set()).add(person.ident)
            person.woken = False
        elif isinstance(action, AwaitChange) and not person.woken:
            return  # blocked
        try:
            person.action = person.gen.send(result)
        except StopIteration as stop:
            outcome = stop.value
            assert isinstance(outcome, Granted)
            assert not any(p.held for p in people), "two holders at once"
            assert outcome.path == f"{PARENT}/{person.node}"
            person.held = True
            grants.append((person.ident, outcome.token))

    for ident, move in schedule:
        step(people[ident % count], move)
    for _ in range(50 * count):  # drain: everyone left must get the lock in turn
        for person in people:
            step(person, "release")
    assert all(p.done for p in people)
    stayed = [i for i in enroll_order if not people[i].gave_up]
    granted = [i for i, _ in grants]
    assert [i for i in granted if i in stayed] == stayed  # FIFO among those that stayed
    tokens = [token for _, token in grants]
    assert tokens == sorted(tokens)
    assert len(set(tokens)) == len(tokens)
    assert model.nodes == {}


moves = st.tuples(
    st.integers(0, 7), st.sampled_from(["step", "step", "step", "release", "give_up"])
)


@given(st.integers(1, 6), st.lists(moves, max_size=120))
def test_protocol_keeps_mutual_exclusion_fifo_and_increasing_tokens(
    count: int, schedule: list[tuple[int, str]]
) -> None:
    run(schedule, count)


def test_a_fixed_contended_schedule() -> None:
    schedule = [(i % 3, "step") for i in range(30)] + [(0, "release"), (1, "give_up")]
    run(schedule, 3)
