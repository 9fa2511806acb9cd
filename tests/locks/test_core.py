"""The pure lock core: validation, fencing, the state machine's invariants, schedules."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsprims import ConfigurationError
from dsprims.locks.core import (
    AcquireRequest,
    Handoff,
    LockParams,
    LockState,
    check_timeout,
    check_token,
    check_ttl,
    decide_acquire,
    decide_extend,
    decide_leave,
    decide_release,
    fence_decision,
    lease_deadline,
    next_token,
    plan_renewal,
    plan_wait,
    refresh_after_handoff,
)


@pytest.mark.parametrize("bad", [0, -1, -0.5, math.nan, math.inf, -math.inf, 1e9])
def test_ttl_must_be_finite_and_positive(bad: float) -> None:
    with pytest.raises(ConfigurationError, match="ttl"):
        check_ttl(bad)
    with pytest.raises(ConfigurationError, match="ttl"):
        LockParams(ttl=bad)


@pytest.mark.parametrize("bad", ["1", None, True, [1]])
def test_ttl_must_be_a_number(bad: object) -> None:
    with pytest.raises(TypeError, match="ttl"):
        check_ttl(bad)


def test_timeouts() -> None:
    assert check_timeout(None) is None
    assert check_timeout(0) == 0.0
    assert check_timeout(math.inf) is None
    for bad in (-1, -0.001, math.nan):
        with pytest.raises(ConfigurationError, match="timeout"):
            check_timeout(bad)
    with pytest.raises(TypeError, match="timeout"):
        check_timeout("1")


def test_params_validation_names_the_parameter() -> None:
    with pytest.raises(ConfigurationError, match="renew_fraction"):
        LockParams(renew_fraction=1.0)
    with pytest.raises(ConfigurationError, match="max_hold"):
        LockParams(max_hold=0)
    with pytest.raises(ConfigurationError, match="clock_drift"):
        LockParams(clock_drift=0.5)
    with pytest.raises(ConfigurationError, match="fencing"):
        LockParams(fencing="wall")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fair"):
        LockParams(fair=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="auto_renew"):
        LockParams(auto_renew="yes")  # type: ignore[arg-type]
    assert LockParams(ttl=0.5).ttl_us == 500_000


def test_tokens_validation() -> None:
    assert check_token(0) == 0
    assert check_token(2**63 - 1) == 2**63 - 1
    with pytest.raises(ConfigurationError):
        check_token(-1)
    with pytest.raises(ConfigurationError):
        check_token(2**63)
    with pytest.raises(TypeError):
        check_token(1.0)
    with pytest.raises(TypeError):
        check_token(True)


def test_fence_decision_accepts_equal_and_higher_tokens() -> None:
    assert fence_decision(None, 5).accepted
    assert fence_decision(5, 5).accepted
    assert fence_decision(5, 6) == fence_decision(None, 6)
    stale = fence_decision(7, 6)
    assert not stale.accepted
    assert stale.highest == 7


def test_next_token_is_floored_by_the_wall_clock_only_in_clock_mode() -> None:
    assert next_token(10, 5) == 11
    assert next_token(10, 500) == 500
    assert next_token(10, 500, "counter") == 11


def test_lease_deadline_keeps_a_drift_reserve() -> None:
    deadline = lease_deadline(100.0, 10.0, 0.01)
    assert deadline == pytest.approx(100.0 + 10.0 - 0.1 - 0.002)


def _req(owner: str, ticket: str = "", ttl: int = 1000, fair: bool = True) -> AcquireRequest:
    return AcquireRequest(owner, ticket, ttl, fair, waiter_ttl_us=5000)


def test_grant_release_and_fifo_wake_up() -> None:
    d, s = decide_acquire(None, 0, 100, _req("a"))
    assert d.granted
    assert d.token == 100
    d, s = decide_acquire(s, 10, 100, _req("b", "tb"))
    assert not d.granted
    assert d.wait_us == 990
    d, s = decide_acquire(s, 20, 100, _req("c", "tc"))
    assert [w.ticket for w in s.queue] == ["tb", "tc"]
    rel, s = decide_release(s, 30, "a")
    assert rel.released
    assert rel.wake == "tb"
    # c comes first after the release but the lock is promised to b: c waits, b is re-woken.
    d, s = decide_acquire(s, 31, 100, _req("c", "tc"))
    assert not d.granted
    assert d.wait_us == -1
    assert d.wake == "tb"
    d, s = decide_acquire(s, 32, 100, _req("b", "tb"))
    assert d.granted
    assert d.token == 101
    assert [w.ticket for w in s.queue] == ["tc"]


def test_barging_when_not_fair() -> None:
    _, s = decide_acquire(None, 0, 0, _req("a"))
    _, s = decide_acquire(s, 1, 0, _req("b", "tb"))
    _, s = decide_release(s, 2, "a")
    d, _ = decide_acquire(s, 3, 0, _req("c", "", fair=False))
    assert d.granted


def test_expired_holder_and_waiters_are_dropped() -> None:
    _, s = decide_acquire(None, 0, 0, _req("a", ttl=100))
    _, s = decide_acquire(s, 1, 0, _req("b", "tb"))
    assert not decide_extend(s, 100, "a", 100)[0].extended
    assert not decide_release(s, 100, "a")[0].released
    # b's queue entry expired at 5001; c is served.
    d, s = decide_acquire(s, 6000, 0, _req("c", "tc"))
    assert d.granted
    assert s.queue == ()


def test_same_owner_asking_again_is_idempotent() -> None:
    d1, s = decide_acquire(None, 0, 0, _req("a", "ta"))
    d2, s = decide_acquire(s, 5, 0, _req("a", "ta"))
    assert d2.granted
    assert d2.token == d1.token
    assert s.deadline == 1005


def test_leave_releases_a_racing_grant_and_wakes_the_next() -> None:
    _, s = decide_acquire(None, 0, 0, _req("a", "ta"))
    _, s = decide_acquire(s, 1, 0, _req("b", "tb"))
    leave, s = decide_leave(s, 2, "ta", "a")
    assert leave.wake == "tb"
    assert s.owner is None
    leave, s = decide_leave(s, 3, "tb")
    assert leave.wake is None
    assert s.queue == ()


def test_release_hands_the_lock_to_a_fair_head() -> None:
    _, s = decide_acquire(None, 0, 100, _req("a"))
    _, s = decide_acquire(s, 10, 100, _req("b", "tb", ttl=2000))
    _, s = decide_acquire(s, 20, 100, _req("c", "tc"))
    # Without hand-off (Redlock, fair=False) the head is only woken.
    plain, _ = decide_release(s, 30, "a")
    assert plain == decide_release(s, 30, "a", handoff=False, wall_us=500)[0]
    assert plain.handoff is None
    rel, s = decide_release(s, 30, "a", handoff=True, wall_us=500)
    assert rel.released
    assert rel.wake == "tb"
    # b's entry (refreshed at 10, lives 5000) has 4980 µs left: more than its 2000 µs lease.
    assert rel.handoff == Handoff(500, 2000)
    assert (s.owner, s.token, s.deadline, s.fence) == ("b", 500, 2030, 500)
    assert [w.ticket for w in s.queue] == ["tc"]
    # b holds it without asking; asking again (a lost wake-up) is the same grant.
    d, s = decide_acquire(s, 40, 100, _req("b", "tb", ttl=2000))
    assert (d.granted, d.token) == (True, 500)
    assert not decide_acquire(s, 41, 100, _req("c", "tc"))[0].granted


def test_a_handed_lease_is_cut_to_what_is_left_of_the_queue_entry() -> None:
    _, s = decide_acquire(None, 0, 0, _req("a", ttl=10_000))
    _, s = decide_acquire(s, 100, 0, _req("b", "tb", ttl=10_000))  # entry expires at 5100
    rel, s = decide_release(s, 4000, "a", handoff=True)
    assert rel.handoff is not None
    assert rel.handoff.lease_us == 1100
    assert s.deadline == 5100
    # A waiter that died in the queue holds the lock no longer than its entry would have lived.
    d, _ = decide_acquire(s, 5100, 0, _req("c", "tc"))
    assert d.granted


def test_a_head_that_queued_unfair_is_only_woken() -> None:
    _, s = decide_acquire(None, 0, 0, _req("a"))
    _, s = decide_acquire(s, 1, 0, _req("b", "tb", fair=False))
    rel, s = decide_release(s, 2, "a", handoff=True)
    assert rel.wake == "tb"
    assert rel.handoff is None
    assert s.owner is None


def test_a_hand_off_that_races_with_a_give_up_is_passed_on() -> None:
    _, s = decide_acquire(None, 0, 0, _req("a"))
    _, s = decide_acquire(s, 1, 0, _req("b", "tb"))
    _, s = decide_acquire(s, 2, 0, _req("c", "tc"))
    rel, s = decide_release(s, 3, "a", handoff=True, wall_us=0)
    assert rel.handoff is not None
    assert s.owner == "b"
    # b timed out as the hand-off reached it: its leave passes the lock on to c.
    leave, s = decide_leave(s, 4, "tb", "b", handoff=True, wall_us=0)
    assert leave.wake == "tc"
    assert leave.handoff is not None
    assert leave.handoff.token > rel.handoff.token
    assert s.owner == "c"
    assert s.queue == ()
    # The last one leaving with its grant leaves the lock free and nothing queued.
    leave, s = decide_leave(s, 5, "tc", "c", handoff=True)
    assert leave == decide_leave(None, 5, "")[0]
    assert (s.owner, s.queue) == (None, ())


def test_refresh_after_handoff() -> None:
    params = LockParams(ttl=10.0, clock_drift=0.0)
    # Plenty left, and the watchdog brings a cut lease up to ttl.
    assert not refresh_after_handoff(100.0, 100.1, 4.0, params, renewing=True)
    # Without a watchdog the caller was promised ttl: a cut lease is extended at once.
    assert refresh_after_handoff(100.0, 100.1, 4.0, params, renewing=False)
    assert not refresh_after_handoff(100.0, 100.1, 10.0, params, renewing=False)
    # Blocked so long that less than half the handed lease is left locally.
    assert refresh_after_handoff(100.0, 105.5, 10.0, params, renewing=True)


@st.composite
def _ops(draw: st.DrawFn) -> list[tuple[str, str, int]]:
    return draw(
        st.lists(
            st.tuples(
                st.sampled_from(["acquire", "release", "extend", "leave"]),
                st.sampled_from(["a", "b", "c", "d"]),
                st.integers(0, 3000),
            ),
            max_size=60,
        )
    )


@given(_ops(), st.booleans(), st.sampled_from(["clock", "counter"]), st.booleans())
def test_invariants_hold_for_any_history(
    ops: list[tuple[str, str, int]], fair: bool, mode: str, handoff: bool
) -> None:
    state: LockState | None = None
    now, last_token = 1_000, 0
    for op, who, dt in ops:
        now += dt
        wall = now // 2  # a wall clock that may lag the counter
        if op == "acquire":
            req = AcquireRequest(who, "t" + who, 2000, fair, 4000, mode)  # type: ignore[arg-type]
            decision, state = decide_acquire(state, now, wall, req)
            if decision.granted:
                assert decision.token >= last_token
                if decision.token > last_token:
                    last_token = decision.token
                assert state.owner == who
                assert all(w.ticket != "t" + who for w in state.queue)
        elif op == "release":
            released, state = decide_release(state, now, who, handoff=handoff, wall_us=wall)
            last_token = _handed(released.handoff, released.wake, state, last_token, now)
        elif op == "extend":
            _, state = decide_extend(state, now, who, 2000)
        else:
            left, state = decide_leave(state, now, "t" + who, handoff=handoff, wall_us=wall)
            last_token = _handed(left.handoff, left.wake, state, last_token, now)
        assert state.fence >= last_token
        assert list(state.queue) == sorted(state.queue)
        assert len({w.ticket for w in state.queue}) == len(state.queue)
        if state.owner is not None:
            assert state.token == state.fence or state.token <= state.fence


def _handed(
    handoff: Handoff | None, wake: str | None, state: LockState, last: int, now: int
) -> int:
    """Check a hand-off: the woken head holds the lock with a new, larger token and a lease
    within its ttl; it left the queue. Returns the highest token so far."""
    if handoff is None:
        return last
    assert wake is not None
    assert state.owner == wake[1:]
    assert state.token == handoff.token > last
    assert 0 < handoff.lease_us <= 2000
    assert state.deadline == now + handoff.lease_us
    assert all(w.ticket != wake for w in state.queue)
    return handoff.token


@given(st.lists(st.sampled_from("abcd"), min_size=1, max_size=30))
def test_each_new_grant_gets_a_strictly_larger_token(owners: list[str]) -> None:
    state: LockState | None = None
    tokens = []
    for i, owner in enumerate(owners):
        decision, state = decide_acquire(state, i * 10, 5, _req(f"{owner}{i}"))
        assert decision.granted
        tokens.append(decision.token)
        _, state = decide_release(state, i * 10 + 1, f"{owner}{i}")
    assert tokens == sorted(set(tokens))


def test_plan_wait() -> None:
    assert plan_wait(-1, 0.0, None, 0.5) == 0.5
    assert plan_wait(100_000, 0.0, None, 0.5) == pytest.approx(0.101)
    assert plan_wait(-1, 1.0, 1.2, 0.5) == pytest.approx(0.2)
    assert plan_wait(-1, 1.2, 1.2, 0.5) is None
    assert plan_wait(0, 0.0, None, 0.5) == pytest.approx(0.001)


def test_plan_renewal_and_max_hold() -> None:
    params = LockParams(ttl=9.0)
    plan = plan_renewal(100.0, 100.0, params)
    assert plan is not None
    assert plan.at == pytest.approx(103.0)
    assert plan.ttl == 9.0
    capped = LockParams(ttl=9.0, max_hold=5.0)
    plan = plan_renewal(100.0, 100.0, capped)
    assert plan is not None
    assert plan.ttl == pytest.approx(2.0)
    assert plan_renewal(104.0, 100.0, capped, ttl=3.0) is None
