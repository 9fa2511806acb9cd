"""The pure core of the ZooKeeper lock: names, queue positions, deadlines, the protocol."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsprims import ManualClock
from dsprims.locks.lease import Lease
from dsprims.locks.zookeeper import _Held, _Session
from dsprims.locks.zookeeper_core import (
    AwaitChange,
    Busy,
    ContenderVanished,
    Enroll,
    Enrolled,
    Granted,
    ListContenders,
    Listing,
    MakeParent,
    ParentExists,
    ParentMissing,
    WatchPredecessor,
    acquire_protocol,
    confirm_deadline,
    contender_prefix,
    owned_by,
    position,
    sequence_of,
    session_effect,
)


def node(owner: str, seq: int) -> str:
    return f"{contender_prefix(owner)}{seq:010d}"


def test_sequence_and_owner_parsing() -> None:
    assert sequence_of(node("ab12", 7)) == 7
    assert sequence_of("ab12-lock-7") is None  # not 10 digits
    assert sequence_of("-lock-0000000001") is None  # no owner
    assert sequence_of("fenced") is None
    assert sequence_of("x-lock-00000000zz") is None
    assert owned_by(node("ab12", 3), "ab12")
    assert not owned_by(node("ab123", 3), "ab12")
    assert not owned_by("ab12-lock-", "ab12")


def test_position_orders_by_sequence_not_by_name() -> None:
    kids = [node("zz", 5), node("aa", 9), node("mm", 2), "not-a-contender"]
    assert position(kids, node("mm", 2)).granted
    behind = position(kids, node("aa", 9))
    assert not behind.granted
    assert behind.predecessor == node("zz", 5)
    assert behind.ahead == 2
    assert position(kids, node("qq", 1)).missing
    with pytest.raises(ValueError, match="not a contender"):
        position(kids, "not-a-contender")


@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=30, unique=True))
def test_exactly_one_holder_and_each_waiter_watches_the_next_lower(seqs: list[int]) -> None:
    kids = [node(f"o{i}", seq) for i, seq in enumerate(seqs)]
    positions = {kid: position(kids, kid) for kid in kids}
    holders = [kid for kid, where in positions.items() if where.granted]
    assert holders == [kids[seqs.index(min(seqs))]]
    watched = [where.predecessor for where in positions.values() if not where.granted]
    assert len(set(watched)) == len(watched)  # no herd: each node has at most one watcher
    for kid, where in positions.items():
        if not where.granted:
            lower = [s for s in seqs if s < sequence_of(kid)]  # type: ignore[operator]
            assert where.predecessor == kids[seqs.index(max(lower))]


def test_confirm_deadline() -> None:
    # Confirmed before the old deadline: moves forward by the session timeout minus drift.
    assert confirm_deadline(10.0, 9.0, 2.0, 0.01, 0.002) == pytest.approx(9.0 + 2.0 - 0.02 - 0.002)
    # Never backwards.
    assert confirm_deadline(10.0, 5.0, 2.0, 0.0, 0.0) == 10.0
    # The lease lapsed before the request was sent: it stays lost.
    assert confirm_deadline(10.0, 10.0, 2.0, 0.0, 0.0) is None
    assert confirm_deadline(None, 1.0, 2.0, 0.0, 0.0) is None


PARENT = "/p/lock"
OWNER = "f" * 32


def start(wait: bool = True):  # type: ignore[no-untyped-def]
    gen = acquire_protocol(PARENT, OWNER, wait=wait)
    return gen, next(gen)


def mine(seq: int) -> str:
    return node(OWNER, seq)


def test_uncontended_grant_is_one_action() -> None:
    gen, action = start()
    assert action == Enroll(PARENT, contender_prefix(OWNER))
    with pytest.raises(StopIteration) as done:
        gen.send(Enrolled(f"{PARENT}/{mine(4)}", 77, alone=True))
    assert done.value.value == Granted(f"{PARENT}/{mine(4)}", 77)


def test_contended_grant_watches_the_predecessor_then_relists() -> None:
    gen, _ = start()
    path = f"{PARENT}/{mine(4)}"
    assert gen.send(Enrolled(path, 77, alone=False)) == ListContenders(PARENT)
    assert gen.send(Listing([mine(4), node("a", 1), node("b", 3)])) == WatchPredecessor(
        f"{PARENT}/{node('b', 3)}"
    )
    assert gen.send(True) == AwaitChange()
    assert gen.send(None) == ListContenders(PARENT)
    # The predecessor left but an earlier one remains: watch that one next.
    assert gen.send(Listing([mine(4), node("a", 1)])) == WatchPredecessor(
        f"{PARENT}/{node('a', 1)}"
    )
    # Already gone when the watch was set: list again without waiting.
    assert gen.send(False) == ListContenders(PARENT)
    with pytest.raises(StopIteration) as done:
        gen.send(Listing([mine(4)]))
    assert done.value.value == Granted(path, 77)


def test_try_gives_up_when_someone_is_ahead() -> None:
    gen, _ = start(wait=False)
    path = f"{PARENT}/{mine(4)}"
    gen.send(Enrolled(path, 77, alone=False))
    with pytest.raises(StopIteration) as done:
        gen.send(Listing([mine(4), node("a", 1)]))
    assert done.value.value == Busy(path)


def test_a_node_of_an_ended_session_is_not_waited_behind() -> None:
    gen, _ = start()
    gen.send(Enrolled(f"{PARENT}/{mine(4)}", 77, alone=False))
    # Still listed (the server has not deleted it yet), but its session ended: enroll again.
    assert gen.send(Listing([node("a", 1), mine(4)], stale=True)) == Enroll(
        PARENT, contender_prefix(OWNER)
    )


def test_missing_parent_is_recreated_in_the_enrolling_transaction() -> None:
    gen, _ = start()
    prefix = contender_prefix(OWNER)
    # The lock znode was deleted as idle: re-create it and enroll in one multi.
    assert gen.throw(ParentMissing()) == Enroll(PARENT, prefix, create_parent=True)
    # Someone re-created it first: enroll as usual.
    assert gen.throw(ParentExists()) == Enroll(PARENT, prefix)
    # It was deleted again meanwhile: back to creating it.
    assert gen.throw(ParentMissing()) == Enroll(PARENT, prefix, create_parent=True)
    # Even the prefix znode is missing: create the whole path, then enroll as usual.
    assert gen.throw(ParentMissing()) == MakeParent(PARENT)
    assert gen.send(None) == Enroll(PARENT, prefix)


def test_a_client_that_deleted_the_parent_starts_by_recreating_it() -> None:
    gen = acquire_protocol(PARENT, OWNER, wait=True, parent_missing=True)
    prefix = contender_prefix(OWNER)
    assert next(gen) == Enroll(PARENT, prefix, create_parent=True)
    assert gen.throw(ParentExists()) == Enroll(PARENT, prefix)  # a wrong guess: enroll as usual


def test_a_grant_after_recreating_the_parent_carries_the_multi_zxid() -> None:
    gen, _ = start()
    gen.throw(ParentMissing())
    with pytest.raises(StopIteration) as done:
        gen.send(Enrolled(f"{PARENT}/{mine(0)}", 99, alone=True))
    assert done.value.value == Granted(f"{PARENT}/{mine(0)}", 99)


def test_parent_races_are_bounded() -> None:
    gen, _ = start()

    def race() -> None:
        for _ in range(1000):
            gen.throw(ParentMissing())
            gen.throw(ParentExists())

    with pytest.raises((ParentMissing, ContenderVanished)):
        race()


def test_a_vanished_node_is_enrolled_again_but_not_forever() -> None:
    gen, _ = start()
    gen.send(Enrolled(f"{PARENT}/{mine(4)}", 77, alone=False))
    assert gen.send(Listing([node("a", 1)])) == Enroll(PARENT, contender_prefix(OWNER))

    def churn() -> None:
        for i in range(100):
            gen.send(Enrolled(f"{PARENT}/{mine(5 + i)}", 78 + i, alone=False))
            gen.send(Listing([node("a", 1)]))

    with pytest.raises(ContenderVanished):
        churn()


def test_session_effects() -> None:
    assert session_effect("LOST", suspended_is_lost=False)[0] == "lose"
    assert session_effect("SUSPENDED", suspended_is_lost=False) == ("keep", "")
    assert session_effect("SUSPENDED", suspended_is_lost=True)[0] == "lose"
    assert session_effect("CONNECTED", suspended_is_lost=True) == ("keep", "")


class _Result:
    """A stand-in for a settled kazoo IAsyncResult."""

    def __init__(self, value: object = None, error: BaseException | None = None) -> None:
        self.value, self.error = value, error

    def get(self, block: bool = True) -> object:
        if self.error is not None:
            raise self.error
        return self.value


class _Driver:
    def release_lease(self, lease: object) -> None:
        return None

    def extend_lease(self, lease: object, ttl: float | None) -> float | None:
        return None


def _held_lease(clock: ManualClock, timeout: float = 2.0) -> tuple[Lease, _Held]:
    lease = Lease(
        "n", 5, owner="/p/n/x-lock-0000000001", driver=_Driver(), clock=clock, ttl=timeout
    )
    return lease, _Held(lease, lease.owner, clock, timeout, strict=False)


def test_heartbeat_answers_move_the_deadline_only_while_the_lease_is_valid(
    manual_clock: ManualClock,
) -> None:
    stat = object()
    lease, held = _held_lease(manual_clock)
    first = lease.deadline
    assert first is not None
    manual_clock.advance(1.0)
    _Session._confirmed(held, manual_clock.monotonic(), _Result(stat))
    assert lease.deadline is not None
    assert lease.deadline > first
    # An unanswered heartbeat (connection lost) changes nothing: the deadline decides.
    _Session._confirmed(held, manual_clock.monotonic() + 0.5, _Result(error=OSError("gone")))
    manual_clock.advance(2.5)  # paused past the deadline
    sent = manual_clock.monotonic()
    manual_clock.advance(0.01)
    # A late answer cannot revive the lease: it lapsed before the request was sent.
    _Session._confirmed(held, sent, _Result(stat))
    assert lease.lost


def test_heartbeat_finding_the_node_gone_marks_the_lease_lost(manual_clock: ManualClock) -> None:
    fired: list[object] = []
    lease, held = _held_lease(manual_clock)
    lease._on_lost = fired.append
    _Session._confirmed(held, manual_clock.monotonic(), _Result(None))
    assert lease.lost
    assert fired == [lease]
    assert "deleted" in (lease.lost_reason or "")
