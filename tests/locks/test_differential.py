"""The Lua scripts and the pure core agree decision for decision (pinned time)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsprims import ManualClock, MemoryBackend
from dsprims.locks.core import LockParams
from dsprims.locks.memory import _MemoryDecisions
from dsprims.locks.redis import _RedisLockStore, _Scripts
from tests.locks import write_outcome

pytestmark = pytest.mark.redis

_RUN = itertools.count()

OPS = st.lists(
    st.tuples(
        st.sampled_from(["try", "queue", "release", "extend", "leave", "leave_owner"]),
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from([0, 0, 1, 5, 100, 2_000, 4_000, 9_000]),
    ),
    min_size=1,
    max_size=40,
)


@given(ops=OPS, fair=st.booleans(), mode=st.sampled_from(["clock", "counter"]))
def test_redis_scripts_match_the_core(
    redis_backend: Any, key_prefix: str, ops: list[tuple[str, str, int]], fair: bool, mode: str
) -> None:
    params = LockParams(ttl=3.0, fair=fair, fencing=mode)  # type: ignore[arg-type]
    clock = ManualClock(start=1000.0)
    prefix = f"{key_prefix}.{next(_RUN)}"
    memory = _MemoryDecisions(MemoryBackend(), "k", params, clock)
    scripts = _Scripts(prefix, "lock", params, clock, wait_slice=memory.wait_slice)
    redis = _RedisLockStore(redis_backend, scripts)
    owners = {w: f"owner-{w}" for w in "abc"}
    for op, who, advance_ms in ops:
        clock.advance(advance_ms / 1000)
        owner, ticket = owners[who], f"t-{who}"
        if op in ("try", "queue"):
            t = ticket if op == "queue" else ""
            assert memory.attempt(owner, t) == redis.attempt(owner, t), (op, who)
        elif op == "release":
            assert memory.release(owner) == redis.release(owner)
        elif op == "extend":
            assert memory.extend(owner, 2.5) == redis.extend(owner, 2.5)
        else:
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
