"""The Lua scripts and the pure core agree decision for decision (pinned time).

In fair mode releases and give-ups hand the lock to the head of the queue: the ``wait`` step
compares what each store's wake-up channel delivers (the hand-off's token and lease, or
nothing) to a waiter that is waiting (queued and not granted since), as the acquire loop reads
it, and every later decision compares who holds the lock and until when.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsprims import ManualClock, MemoryBackend
from dsprims.locks.core import LockParams
from dsprims.locks.memory import _MemoryDecisions, _MemoryLockStore
from dsprims.locks.redis import _RedisLockStore, _Scripts
from tests.locks import write_outcome

pytestmark = pytest.mark.redis

_RUN = itertools.count()

OPS = st.lists(
    st.tuples(
        # Weighted towards queueing, releasing and waiting, so that hand-offs are common.
        st.sampled_from(
            [
                *("try", "queue", "queue", "release", "release", "extend"),
                *("leave", "leave_owner", "wait", "wait"),
            ]
        ),
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from([0, 0, 0, 1, 5, 100, 500, 2_000, 4_000, 9_000]),
    ),
    min_size=1,
    max_size=40,
)


@given(
    ops=OPS,
    fair=st.booleans(),
    mode=st.sampled_from(["clock", "counter"]),
    ttl=st.sampled_from([1.0, 3.0, 6.0]),  # below, at and above a queue entry's lifetime
    contended=st.booleans(),
)
def test_redis_scripts_match_the_core(
    redis_backend: Any,
    key_prefix: str,
    ops: list[tuple[str, str, int]],
    fair: bool,
    mode: str,
    ttl: float,
    contended: bool,
) -> None:
    params = LockParams(ttl=ttl, fair=fair, fencing=mode)  # type: ignore[arg-type]
    clock = ManualClock(start=1000.0)
    prefix = f"{key_prefix}.{next(_RUN)}"
    decisions = _MemoryDecisions(MemoryBackend(), "k", params, clock)
    memory = _MemoryLockStore(decisions)
    scripts = _Scripts(prefix, "lock", params, clock, wait_slice=decisions.wait_slice)
    redis = _RedisLockStore(redis_backend, scripts)
    owners = {w: f"owner-{w}" for w in "abc"}
    for who in owners:
        memory.open_ticket(f"t-{who}")
    if contended:
        # A holder and two waiters, and one release (a hand-off in fair mode) to start with.
        start = [("queue", "a", 0), ("queue", "b", 1), ("queue", "c", 1), ("release", "a", 1)]
        ops = [*start, ("wait", "b", 0), *ops]
    waiting = dict.fromkeys(owners, False)
    for op, who, advance_ms in ops:
        clock.advance(advance_ms / 1000)
        owner, ticket = owners[who], f"t-{who}"
        if op in ("try", "queue"):
            t = ticket if op == "queue" else ""
            decision = memory.attempt(owner, t)
            assert decision == redis.attempt(owner, t), (op, who)
            waiting[who] = bool(t) and not decision.granted
        elif op == "release":
            assert memory.release(owner) == redis.release(owner)
        elif op == "extend":
            assert memory.extend(owner, 2.5) == redis.extend(owner, 2.5)
        elif op == "wait":
            if waiting[who]:
                # What the wake-up channel holds: a hand-off (token, lease) or nothing.
                handed = memory.wait(ticket, 0.0)
                assert handed == redis.wait(ticket, 0.0), who
                waiting[who] = handed is None
        else:
            waiting[who] = False
            o = owner if op == "leave_owner" else ""
            memory.leave(o, ticket)
            redis.leave(o, ticket)


WRITES = st.lists(
    st.tuples(
        st.sampled_from(["k1", "k{2}", "ключ"]),
        st.one_of(st.text(max_size=8), st.binary(max_size=8)),
        st.one_of(st.integers(0, 20), st.sampled_from([2**53 - 1, 2**53, 2**53 + 1, 2**63 - 1])),
    ),
    min_size=1,
    max_size=30,
)


@given(writes=WRITES)
def test_fenced_store_agrees_with_memory(
    redis_backend: Any, key_prefix: str, writes: list[tuple[str, str | bytes, int]]
) -> None:
    from dsprims.locks import FencedStore

    namespace = f"ns{next(_RUN)}"
    memory = FencedStore(namespace, backend=MemoryBackend())
    redis = FencedStore(namespace, backend=redis_backend, prefix=key_prefix)
    for key, value, token in writes:
        outcomes = [write_outcome(store, key, value, token) for store in (memory, redis)]
        assert outcomes[0] == outcomes[1], (key, token)
        assert memory.read(key) == redis.read(key)
