"""Model check of the acquire protocol against a tiny in-memory model of ZooKeeper.

Several contenders run :func:`acquire_protocol` in an interleaving chosen by hypothesis; the
model applies creates, deletes and one-shot watches the way ZooKeeper does (one total order,
watches fire on delete). Holders release, some waiters give up (delete their node). Checked:
at most one holder at any time, grants in enrollment order among those that stayed, tokens
strictly increasing in grant order, every waiter that stays is eventually granted, and no
contender is ever woken by a node that is not its predecessor (no herd).

The schedule also deletes the lock znode whenever it is empty (the idle cleanup, racing the
contenders' enrollments); ZooKeeper then restarts the sequence numbers of the re-created znode
at 0, while zxids keep growing, so the tokens must still increase.
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
    MakeParent,
    Outcome,
    ParentExists,
    ParentMissing,
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
    parent: bool = True  # the lock znode exists
    cleanups: int = 0

    def make_parent(self) -> None:
        assert not self.parent
        self.parent, self.seq = True, 0  # a new znode: its sequence counter starts at 0

    def cleanup(self) -> None:
        """``delete(lock znode)``: fails with NotEmpty (a no-op here) unless it has no children."""
        if self.parent and not self.nodes:
            self.zxid += 1
            self.parent = False
            self.cleanups += 1

    def create(self, prefix: str) -> tuple[str, int, bool]:
        self.zxid += 1  # one zxid for the whole multi (with or without the parent's create)
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


def run(schedule: list[tuple[int, str]], count: int) -> Model:
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
        error: Exception | None = None
        if isinstance(action, Enroll) and action.create_parent and model.parent:
            error = ParentExists()
        elif isinstance(action, Enroll) and not action.create_parent and not model.parent:
            error = ParentMissing()
        elif isinstance(action, Enroll):
            if action.create_parent:
                model.make_parent()
            name, czxid, alone = model.create(action.prefix)
            person.node, person.enrolled_at = name, len(enroll_order)
            enroll_order.append(person.ident)
            result = Enrolled(f"{PARENT}/{name}", czxid, alone)
        elif isinstance(action, MakeParent):
            if not model.parent:
                model.make_parent()
        elif isinstance(action, ListContenders):
            # A contender's own node keeps the lock znode alive, so it always exists here.
            assert model.parent
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
            person.action = person.gen.throw(error) if error else person.gen.send(result)
        except StopIteration as stop:
            outcome = stop.value
            assert isinstance(outcome, Granted)
            assert not any(p.held for p in people), "two holders at once"
            assert outcome.path == f"{PARENT}/{person.node}"
            person.held = True
            grants.append((person.ident, outcome.token))

    for ident, move in schedule:
        if move == "cleanup":
            model.cleanup()
        else:
            step(people[ident % count], move)
    for _ in range(50 * count):  # drain: everyone left must get the lock in turn
        for person in people:
            step(person, "release")
            model.cleanup()  # the cleanup keeps racing the late enrollments
    assert all(p.done for p in people)
    stayed = [i for i in enroll_order if not people[i].gave_up]
    granted = [i for i, _ in grants]
    assert [i for i in granted if i in stayed] == stayed  # FIFO among those that stayed
    tokens = [token for _, token in grants]
    assert tokens == sorted(tokens)
    assert len(set(tokens)) == len(tokens)
    assert model.nodes == {}
    assert not model.parent  # the last cleanup removed the idle lock znode
    return model


moves = st.tuples(
    st.integers(0, 7),
    st.sampled_from(["step", "step", "step", "release", "give_up", "cleanup"]),
)


@given(st.integers(1, 6), st.lists(moves, max_size=120))
def test_protocol_keeps_mutual_exclusion_fifo_and_increasing_tokens(
    count: int, schedule: list[tuple[int, str]]
) -> None:
    run(schedule, count)


def test_a_fixed_contended_schedule() -> None:
    schedule = [(i % 3, "step") for i in range(30)] + [(0, "release"), (1, "give_up")]
    run(schedule, 3)


def test_cleanup_races_enrollments_and_tokens_keep_growing() -> None:
    schedule = [
        (0, "step"),  # 0 enrolls alone: granted
        (0, "release"),
        (0, "cleanup"),  # the idle lock znode is deleted
        (1, "step"),  # 1 finds it gone (ParentMissing) ...
        (2, "step"),  # ... and so does 2
        (1, "step"),  # 1 re-creates it with its node in one multi: granted
        (2, "step"),  # 2's multi finds it re-created (ParentExists) ...
        (2, "step"),  # ... and enrolls behind 1
        (0, "cleanup"),  # NotEmpty: a no-op
        (2, "step"),
        (2, "step"),
        (1, "release"),
        (2, "step"),
        (2, "step"),  # granted
        (2, "release"),
        (0, "cleanup"),  # deleted again
        (3, "step"),
        (3, "step"),  # 3 re-creates it: its sequence number restarts at 0, its token does not
    ]
    model = run(schedule, 4)
    assert model.cleanups == 3
