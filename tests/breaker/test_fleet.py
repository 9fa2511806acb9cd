"""Fleet mode on a real Redis: shared transitions, exact permits, outages, and a differential
test against the local breaker."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsprims import (
    AsyncCircuitBreaker,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    ManualClock,
    StateChangeEvent,
    async_backend_from_url,
)

pytestmark = pytest.mark.redis


class Boom(Exception):
    pass


def boom() -> None:
    raise Boom


def state_of(breaker: CircuitBreaker | AsyncCircuitBreaker) -> BreakerState:
    return breaker.state


def wait_for_state(breaker: CircuitBreaker, state: BreakerState) -> threading.Event:
    seen = threading.Event()

    def listener(event: StateChangeEvent) -> None:
        if event.to_state is state:
            seen.set()

    breaker.on_state_change(listener)
    if breaker.state is state:
        seen.set()
    return seen


def with_timeout(url: str, timeout: float) -> str:
    """``url`` with a ``timeout`` query parameter (fail-fast sockets for outage tests)."""
    return url + ("&" if "?" in url else "?") + f"timeout={timeout}"


def one_call(name: str, url: str, prefix: str, **kw: Any) -> CircuitBreaker:
    """A fleet breaker on ``url`` with a one-call window: its first failure trips it."""
    return CircuitBreaker(name, backend=url, prefix=prefix, minimum_calls=1, window_size=1, **kw)


@pytest.mark.parametrize("server", ["redis_server", "redis_cluster"])
def test_one_trips_the_other_sees_open(
    request: pytest.FixtureRequest, server: str, key_prefix: str
) -> None:
    url = request.getfixturevalue(server).url
    kw: dict[str, Any] = {"minimum_calls": 2, "window_size": 2, "prefix": key_prefix}
    a = CircuitBreaker("fleet", backend=url, **kw)
    b = CircuitBreaker("fleet", backend=url, **kw)
    try:
        opened = wait_for_state(b, BreakerState.OPEN)
        b.call(lambda: 1)  # b's own successes stay local
        for _ in range(2):
            with pytest.raises(Boom):
                a.call(boom)
        assert state_of(a) is BreakerState.OPEN
        assert opened.wait(5), "the subscriber never delivered the trip"
        with pytest.raises(CircuitOpenError) as info:
            b.call(lambda: 1)
        assert 0 < info.value.retry_after <= 30.0
    finally:
        a.close()
        b.close()


def test_half_open_permits_exact_across_breakers(redis_server: Any, key_prefix: str) -> None:
    clock = ManualClock(start=1_000_000.0)
    breakers = [
        one_call(
            "permits",
            redis_server.url,
            key_prefix,
            half_open_calls=2,
            open_duration=5.0,
            clock=clock,
        )
        for _ in range(4)
    ]
    try:
        seen = [wait_for_state(b, BreakerState.OPEN) for b in breakers[1:]]
        with pytest.raises(Boom):
            breakers[0].call(boom)
        assert all(event.wait(5) for event in seen)  # pushed to every subscriber
        clock.advance(4.999)
        for b in breakers:
            with pytest.raises(CircuitOpenError):
                b.try_acquire()
        clock.advance(0.001)
        granted = []
        for b in breakers * 2:
            with contextlib.suppress(CircuitOpenError):
                granted.append(b.try_acquire())
        assert len(granted) == 2
        closed = [wait_for_state(b, BreakerState.CLOSED) for b in breakers]
        granted[0].success()
        granted[1].success()
        assert all(event.wait(5) for event in closed)
        assert all(b.call(lambda: 1) == 1 for b in breakers)
    finally:
        for b in breakers:
            b.close()


def test_open_period_is_guarded_by_the_shared_clock(redis_server: Any, key_prefix: str) -> None:
    # Two processes' clocks disagree: the one running ahead must not end the open period early.
    behind = ManualClock(start=2_000_000.0)
    ahead = ManualClock(start=2_000_000.0)
    kw: dict[str, Any] = {
        "backend": redis_server.url,
        "prefix": key_prefix,
        "minimum_calls": 1,
        "window_size": 1,
        "open_duration": 10.0,
    }
    a = CircuitBreaker("guard", clock=behind, **kw)
    with pytest.raises(Boom):
        a.call(boom)
    ahead.advance(10.0)
    b = CircuitBreaker("guard", clock=ahead, **kw)
    try:
        permit = b.try_acquire()  # the pinned clock of b says the period is over: it is, for b
        permit.success()
        assert state_of(b) is BreakerState.CLOSED
    finally:
        a.close()
        b.close()


def test_outage_falls_back_to_local_within_timeout(redis_server: Any, key_prefix: str) -> None:
    url = with_timeout(redis_server.url, 0.3)
    b = CircuitBreaker(
        "outage",
        backend=url,
        prefix=key_prefix,
        minimum_calls=3,
        window_size=3,
        retry_interval=5.0,
    )
    try:
        redis_server.kill()
        started = time.monotonic()
        assert b.call(lambda: 1) == 1  # CLOSED: never touches Redis
        with pytest.raises(Boom):
            b.call(boom)
        with pytest.raises(Boom):
            b.call(boom)  # trips: the CAS fails within the timeout, the trip applies locally
        assert state_of(b) is BreakerState.OPEN
        with pytest.raises(CircuitOpenError):
            b.call(lambda: 1)
        assert time.monotonic() - started < 0.3 + 1.0
    finally:
        b.close()
        redis_server.restart()


@pytest.mark.parametrize("server", ["redis_server", "redis_cluster"])
async def test_async_fleet(request: pytest.FixtureRequest, server: str, key_prefix: str) -> None:
    url = request.getfixturevalue(server).url
    clock = ManualClock(start=3_000_000.0)
    kw: dict[str, Any] = {
        "prefix": key_prefix,
        "minimum_calls": 1,
        "window_size": 1,
        "open_duration": 1.0,
        "clock": clock,
    }
    a = AsyncCircuitBreaker("async-fleet", backend=url, **kw)
    backend_b = async_backend_from_url(url)
    b = AsyncCircuitBreaker("async-fleet", backend=backend_b, **kw)
    try:

        async def fail() -> None:
            raise Boom

        async def ok() -> int:
            return 1

        with pytest.raises(Boom):
            await a.call(fail)
        clock.advance(1.0)
        permit = await b.try_acquire()  # b learns of the open period from the CAS reply
        assert permit.trial
        with pytest.raises(CircuitOpenError):
            await a.try_acquire()  # the only permit is b's, fleet-wide
        closed = asyncio.Event()
        a.on_state_change(lambda e: closed.set() if e.to_state is BreakerState.CLOSED else None)
        await permit.success()
        await asyncio.wait_for(closed.wait(), 5)  # b's verdict, pushed to a
        assert await a.call(ok) == 1
        forced = asyncio.Event()
        b.on_state_change(
            lambda e: forced.set() if e.to_state is BreakerState.FORCED_OPEN else None
        )
        await a.force_open()
        await asyncio.wait_for(forced.wait(), 5)  # pushed to b's subscriber task
        with pytest.raises(CircuitOpenError):
            await b.call(ok)
    finally:
        await a.aclose()
        await b.aclose()
        await backend_b.aclose()


OPS = st.lists(
    st.one_of(
        st.just("ok"),
        st.just("fail"),
        st.just("hold"),
        st.just("settle"),
        st.integers(min_value=1, max_value=4000).map(lambda ms: f"advance {ms}"),
    ),
    max_size=40,
)


@given(ops=OPS)
def test_fleet_agrees_with_local(redis_server: Any, ops: list[str]) -> None:
    import uuid

    prefix = f"diff-{uuid.uuid4().hex}"
    kw: dict[str, Any] = {
        "minimum_calls": 3,
        "window_size": 4,
        "half_open_calls": 2,
        "open_duration": 2.0,
        "open_duration_multiplier": 2.0,
        "max_half_open_wait": 6.0,
    }
    local_clock = ManualClock(start=5_000_000.0)
    fleet_clock = ManualClock(start=5_000_000.0)
    local = CircuitBreaker("diff", clock=local_clock, **kw)
    fleet = CircuitBreaker("diff", clock=fleet_clock, backend=redis_server.url, prefix=prefix, **kw)
    held: list[list[Any]] = [[], []]
    try:
        for op in ops:
            outcomes: list[tuple[str, object] | None] = []
            for i, (b, clock) in enumerate(((local, local_clock), (fleet, fleet_clock))):
                if op.startswith("advance"):
                    clock.advance(int(op.split()[1]) / 1000)
                    outcomes.append(None)
                    continue
                if op == "settle":
                    if held[i]:
                        held[i].pop(0).success()
                    outcomes.append(None)
                    continue
                try:
                    permit = b.try_acquire()
                except CircuitOpenError as exc:
                    outcomes.append(("rejected", round(exc.retry_after, 3)))
                    continue
                if op == "hold":
                    held[i].append(permit)
                elif op == "ok":
                    permit.success()
                else:
                    permit.failure()
                outcomes.append(("ran", permit.trial))
            assert outcomes[0] == outcomes[1], op
            assert local.state is fleet.state, op
    finally:
        fleet.close()


def test_clock_running_ahead_cannot_end_the_open_period(redis_server: Any, key_prefix: str) -> None:
    b = one_call("ahead", redis_server.url, key_prefix, open_duration=20.0)
    try:
        with pytest.raises(Boom):
            b.call(boom)
        link = b._engine.link
        assert link is not None
        assert link.offset is not None
        link.offset += 60.0  # this process now believes the open period ended long ago
        link._best_rtt = 0.0  # and will not correct the estimate from the next replies
        with pytest.raises(CircuitOpenError) as info:
            b.try_acquire()  # the script's guard refuses; the server's time decides
        assert 15.0 < info.value.retry_after <= 20.0
        assert b._engine.snap.state is BreakerState.OPEN
    finally:
        b.close()


def test_frozen_redis_bounds_every_call(redis_server: Any, key_prefix: str) -> None:
    # A frozen server (no RST, no answer) is the worst case: each round trip waits the whole
    # timeout. The breaker pays it once per retry_interval and decides locally meanwhile.
    timeout = 0.3
    url = with_timeout(redis_server.url, timeout)
    b = one_call("frozen", url, key_prefix, open_duration=0.05, retry_interval=30.0)
    try:
        with redis_server.frozen_for_a_while():
            worst = 0.0
            for _ in range(5):
                started = time.monotonic()
                with pytest.raises((Boom, CircuitOpenError)):
                    b.call(boom)  # trip, reject, then trials once the short open period ends
                worst = max(worst, time.monotonic() - started)
                assert b.state in (BreakerState.OPEN, BreakerState.HALF_OPEN)
            assert worst < timeout + 1.0
    finally:
        b.close()


async def test_async_outage_falls_back_to_local(redis_server: Any, key_prefix: str) -> None:
    url = with_timeout(redis_server.url, 0.3)
    b = AsyncCircuitBreaker(
        "aoutage", backend=url, prefix=key_prefix, minimum_calls=1, window_size=1
    )

    async def fail() -> None:
        raise Boom

    try:
        assert await b.call(_aok) == 1  # connects and subscribes while Redis is up
        redis_server.kill()
        started = time.monotonic()
        with pytest.raises(Boom):
            await b.call(fail)
        with pytest.raises(CircuitOpenError):
            await b.call(_aok)
        assert time.monotonic() - started < 0.3 + 1.0
        assert state_of(b) is BreakerState.OPEN
    finally:
        await b.aclose()
        redis_server.restart()


async def _aok() -> int:
    return 1


def test_successful_closed_calls_cost_no_round_trip(redis_server: Any, key_prefix: str) -> None:
    from dsprims import backend_from_url

    backend = backend_from_url(redis_server.url)
    b = CircuitBreaker(
        "no-rtt", backend=backend, prefix=key_prefix, minimum_calls=5, window_size=20
    )
    sent: list[object] = []
    original = backend._execute

    def counting(*args: Any) -> Any:
        sent.append(args[0])
        return original(*args)

    backend._execute = counting
    try:
        for i in range(1000):
            assert b.call(lambda: i) == i  # noqa: B023 - called at once
        for _ in range(3):  # failures below the threshold: still local
            with pytest.raises(Boom):
                b.call(boom)
        assert sent == []
        for _ in range(20):  # now the window trips: exactly the transitions go to Redis
            with contextlib.suppress(Boom, CircuitOpenError):
                b.call(boom)
        assert 1 <= len(sent) <= 2
    finally:
        backend._execute = original
        b.close()
        backend.close()


async def test_a_trial_cancelled_in_its_fleet_round_trip_hands_the_permit_back(
    redis_server: Any, key_prefix: str
) -> None:
    # The permit request is on the wire when the caller is cancelled (the server is frozen):
    # Redis grants it once thawed, and the breaker hands it back, so the fleet's only trial
    # permit goes to the next caller instead of being held until max_half_open_wait.
    clock = ManualClock(start=1_000_000.0)

    def fleet_breaker() -> AsyncCircuitBreaker:
        return AsyncCircuitBreaker(
            "acancel",
            backend=redis_server.url,
            prefix=key_prefix,
            minimum_calls=1,
            window_size=1,
            half_open_calls=1,
            open_duration=5.0,
            clock=clock,
        )

    async def fail() -> None:
        raise Boom

    b, other = fleet_breaker(), fleet_breaker()
    try:
        assert await other.call(_aok) == 1  # subscribed before the trip
        with pytest.raises(Boom):
            await b.call(fail)
        clock.advance(5.0)  # the open period is over: the next call asks Redis for the permit
        redis_server.freeze()
        try:
            task = asyncio.ensure_future(b.call(_aok))
            await asyncio.sleep(0.2)
            assert not task.done()  # its request waits on the frozen server
            task.cancel()
            await asyncio.sleep(0.05)
        finally:
            redis_server.thaw()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await other.call(_aok) == 1  # the permit came back: this call was the trial
        assert state_of(other) is BreakerState.CLOSED
    finally:
        await b.aclose()
        await other.aclose()


async def test_an_async_client_without_pub_sub_polls_the_shared_state(
    redis_server: Any, key_prefix: str
) -> None:
    # redis-py before 8.0 has no pub/sub on its asyncio RedisCluster: such a breaker reads the
    # shared state every 0.2 s instead, and still learns of another process's trip by itself.
    from redis.asyncio import Redis

    from dsprims import AsyncRedisBackend

    class NoPubSub(Redis):
        @property
        def pubsub(self) -> Any:
            raise AttributeError("pubsub")

    client = NoPubSub(host="127.0.0.1", port=redis_server.port)
    kw: dict[str, Any] = {"prefix": key_prefix, "minimum_calls": 1, "window_size": 1}
    polled = AsyncCircuitBreaker("apoll", backend=AsyncRedisBackend(client), **kw)
    tripper = AsyncCircuitBreaker("apoll", backend=redis_server.url, **kw)

    async def fail() -> None:
        raise Boom

    try:
        assert await polled.call(_aok) == 1  # starts its link: the poller
        opened = asyncio.Event()
        polled.on_state_change(lambda e: opened.set() if e.to_state is BreakerState.OPEN else None)
        with pytest.raises(Boom):
            await tripper.call(fail)
        await asyncio.wait_for(opened.wait(), 5)  # read by the poller, no call needed
        with pytest.raises(CircuitOpenError):
            await polled.call(_aok)
    finally:
        await polled.aclose()
        await tripper.aclose()
        await client.aclose()
