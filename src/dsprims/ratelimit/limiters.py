"""Rate limiters: token bucket (GCRA), exact sliding log, sliding-window counter; sync and async.

Each limiter is a thin shell over a pure core in :mod:`dsprims.ratelimit.core`:

* on the **memory** backend the core runs under the backend's lock (thread-safe, in-process);
* on **Redis** (standalone or Cluster) ``ratelimit_decide.lua``, a port of the same core, runs in
  ONE ``EVALSHA`` per decision, composite decisions included. With no ``clock=`` the script reads
  the server's ``TIME``, so the clocks of the clients cannot matter; with an explicit ``clock=``
  the client sends that clock's wall time (``time_ns() // 1000`` µs), which is how tests pin time.

The async twins (``AsyncTokenBucket`` …) share everything but the one awaited call: the argument
checks, key building, reply parsing, wait planning and outage handling live in
:class:`_LimiterBase` and are used by both flavours.

Keys: ``<prefix>:{<key>}:rl.<algo>.<params>`` (the log adds a second key with suffix ``.n``), so
one key's state shares a Cluster slot, two limiters with different settings never share state, and
a changed configuration starts afresh. Pass ``name=`` to choose the last part yourself.

Expiry: every stored key carries a TTL equal to the time its state still matters (until the
bucket is full again, or the last admission leaves the window) plus a small margin, so idle keys
vanish and a full bucket reads the same as a missing key. With a pinned ``clock=`` on Redis the
TTL (which Redis counts in real time) also gets ``pinned_ttl_grace`` seconds (default one hour):
state the pinned clock still needs survives as long as that clock lags real time by less than the
grace since the key was last written.

Failure modes: when Redis cannot be reached (:class:`~dsprims.BackendUnavailable`) the
``on_outage`` policy decides: ``"raise"`` (fail closed, the default), ``"allow"`` (fail open: an
admitted decision with ``degraded=True``) or ``"local"`` (decide with a per-process in-memory
limiter of the same settings, ``degraded=True``). Other backend errors always raise.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Final, Literal, cast

from dsprims.backends._lua import lua_script
from dsprims.backends.base import DEFAULT_PREFIX, check_name, check_prefix, escape_name
from dsprims.backends.memory import MemoryBackend
from dsprims.backends.url import resolve_async_backend, resolve_backend
from dsprims.errors import BackendUnavailable, ConfigurationError, RateLimitExceeded
from dsprims.ratelimit.core import (
    CounterParams,
    LogParams,
    TokenBucketParams,
    check_cost,
    counter_step,
    gcra_decide,
    gcra_reserve,
    log_step,
)
from dsprims.ratelimit.decision import RateLimitDecision, decision_from_verdict
from dsprims.timesource import SYSTEM_CLOCK, Clock

__all__ = [
    "AsyncSlidingWindowCounter",
    "AsyncSlidingWindowLog",
    "AsyncTokenBucket",
    "OutagePolicy",
    "SlidingWindowCounter",
    "SlidingWindowLog",
    "TokenBucket",
]

logger = logging.getLogger(__name__)

OutagePolicy = Literal["raise", "allow", "local"]
_POLICIES: Final = ("raise", "allow", "local")

SCRIPT: Final = "ratelimit_decide"
#: Extra lifetime of memory entries (seconds): the state outlives the instant it stops
#: mattering, so a rounding difference between float deadlines and µs time never drops it early.
_MARGIN: Final = 0.001
_NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")

Verdict4 = tuple[bool, int, int, int]
#: "No timeout" for a reservation: longer than any wait a valid bucket can need.
_FOREVER_US: Final = 2**52
#: How many validated keys a limiter remembers (then it forgets them all and starts again).
_KNOWN_KEYS: Final = 65536


def _now_us(t: float) -> int:
    # Nearest microsecond: a clock moved by whole µs amounts lands on the grid despite float dust.
    # (math.floor rather than int(): the same for t >= 0, a third of the cost in CPython 3.11.)
    return math.floor(t * 1e6 + 0.5)


class _LogState:
    """The mutable log of one key (memory backend): parallel deques and their total."""

    __slots__ = ("costs", "times", "total")

    def __init__(self) -> None:
        self.times: deque[int] = deque()
        self.costs: deque[int] = deque()
        self.total = 0


# --------------------------------------------------------------------------------------------
# Algorithms: how one limiter's core runs on memory and what it sends to the script.


class _Algorithm:
    code: str
    limit: int
    nkeys: int
    part: str

    def script_params(self) -> tuple[int, int, int]:
        raise NotImplementedError

    def memory(
        self,
        store: MemoryBackend,
        table: dict[str, list[Any]],
        clock: Clock,
        t: float,
        now: int,
        key: str,
        cost: int,
        consume: bool,
    ) -> Verdict4:
        raise NotImplementedError


class _Gcra(_Algorithm):
    """GCRA on the memory backend and its script parameters.

    The stored state is the theoretical arrival time in whole µs: an ``int`` when written here,
    an integer-valued ``float`` when written by the specialised ``try_acquire`` (:func:`_fast_gcra`,
    which keeps it below 2**52, where doubles hold every integer exactly). Both read it back
    with ``int()`` before calling the core.
    """

    code = "t"
    nkeys = 1

    def __init__(self, params: TokenBucketParams) -> None:
        self.params = params
        self.limit = params.capacity
        self.interval = params.interval_us
        self.tolerance = params.tolerance_us
        self.part = f"rl.tb.{params.interval_us}.{params.capacity}"

    def script_params(self) -> tuple[int, int, int]:
        return self.interval, self.tolerance, self.limit

    def memory(
        self,
        store: MemoryBackend,
        table: dict[str, list[Any]],
        clock: Clock,
        t: float,
        now: int,
        key: str,
        cost: int,
        consume: bool,
    ) -> Verdict4:
        entry = table.get(key)
        if entry is not None and entry[2] is clock and t < entry[1]:
            # Hot path: a live key written on this clock is updated in place.
            allowed, remaining, retry, reset, tat = gcra_decide(
                self.interval, self.tolerance, int(entry[0]), now, cost, consume
            )
            if allowed and consume:
                entry[0] = tat
                entry[1] = t + reset * 1e-6 + _MARGIN
            return allowed, remaining, retry, reset
        state = store.get(key)
        allowed, remaining, retry, reset, tat = gcra_decide(
            self.interval, self.tolerance, now if state is None else int(state), now, cost, consume
        )
        if allowed and consume and tat > now:
            store.transact(key, lambda _old: (None, tat), ttl=reset * 1e-6 + _MARGIN, clock=clock)
        return allowed, remaining, retry, reset

    def reserve(
        self,
        store: MemoryBackend,
        clock: Clock,
        t: float,
        now: int,
        key: str,
        cost: int,
        max_wait: int,
    ) -> Verdict4:
        """Book an admission instant (:func:`~dsprims.ratelimit.core.gcra_reserve`)."""
        state = store.get(key)
        reserved, remaining, wait, reset, tat = gcra_reserve(
            self.interval, self.tolerance, now if state is None else int(state), now, cost, max_wait
        )
        if reserved and tat > now:
            store.transact(key, lambda _old: (None, tat), ttl=reset * 1e-6 + _MARGIN, clock=clock)
        return reserved, remaining, wait, reset


class _Counter(_Algorithm):
    code = "c"
    nkeys = 1

    def __init__(self, params: CounterParams) -> None:
        self.params = params
        self.limit = params.limit
        self.window_ticks = params.window_ticks
        self.tick = params.tick_us
        self.part = f"rl.swc.{params.window_ticks * params.tick_us}.{params.limit}"

    def script_params(self) -> tuple[int, int, int]:
        return self.limit, self.window_ticks, self.tick

    def live(self, entry: list[Any], t: float, now: int, cost: int, consume: bool) -> Verdict4:
        """Decide on a live entry written on this clock, updating it in place (lock held)."""
        allowed, remaining, retry, reset, state = counter_step(
            self.limit, self.window_ticks, self.tick, entry[0], now, cost, consume
        )
        if allowed and consume and cost:
            entry[0] = state
            entry[1] = t + reset * 1e-6 + _MARGIN
        return allowed, remaining, retry, reset

    def memory(
        self,
        store: MemoryBackend,
        table: dict[str, list[Any]],
        clock: Clock,
        t: float,
        now: int,
        key: str,
        cost: int,
        consume: bool,
    ) -> Verdict4:
        entry = table.get(key)
        # A live key written on this clock is read and updated in place (the caller holds the
        # lock); anything else goes through the backend's own expiry and accounting.
        if entry is not None and entry[2] is clock and t < entry[1]:
            return self.live(entry, t, now, cost, consume)
        allowed, remaining, retry, reset, state = counter_step(
            self.limit, self.window_ticks, self.tick, store.get(key), now, cost, consume
        )
        if allowed and consume and cost:
            ttl = reset * 1e-6 + _MARGIN
            store.transact(key, lambda _old: (None, state), ttl=ttl, clock=clock)
        return allowed, remaining, retry, reset


class _Log(_Algorithm):
    code = "l"
    nkeys = 2

    def __init__(self, params: LogParams) -> None:
        self.params = params
        self.limit = params.limit
        self.window = params.window_us
        self.part = f"rl.swl.{params.window_us}.{params.limit}"

    def script_params(self) -> tuple[int, int, int]:
        return self.limit, self.window, 0

    def live(
        self, entry: list[Any], t: float, now: int, cost: int, consume: bool
    ) -> Verdict4 | None:
        """Decide on a live entry written on this clock, updating it in place (lock held).

        Returns ``None``, changing nothing, when the log would become empty: the key must then
        be deleted, which :meth:`memory` does.
        """
        state: _LogState = entry[0]
        times, costs = state.times, state.costs
        allowed, remaining, retry, reset, expired, append, at, total = log_step(
            self.window, self.limit, times, costs, state.total, now, cost, consume
        )
        if not append and expired == len(times):
            return None
        for _ in range(expired):
            times.popleft()
            costs.popleft()
        state.total = total
        if append:
            if times and times[-1] == at:
                costs[-1] += append
            else:
                times.append(at)
                costs.append(append)
            entry[1] = t + reset * 1e-6 + _MARGIN
        return allowed, remaining, retry, reset

    def memory(
        self,
        store: MemoryBackend,
        table: dict[str, list[Any]],
        clock: Clock,
        t: float,
        now: int,
        key: str,
        cost: int,
        consume: bool,
    ) -> Verdict4:
        entry = table.get(key)
        state: _LogState | None
        if entry is not None and entry[2] is clock and t < entry[1]:
            verdict = self.live(entry, t, now, cost, consume)
            if verdict is not None:
                return verdict
            state = entry[0]  # the log empties: decided below, and the key deleted
        else:
            state = store.get(key)
        if state is None:
            allowed, remaining, retry, reset, _, append, at, total = log_step(
                self.window, self.limit, (), (), 0, now, cost, consume
            )
            if append:
                state = _LogState()
                state.times.append(at)
                state.costs.append(append)
                state.total = total
                ttl = reset * 1e-6 + _MARGIN
                store.transact(key, lambda _old: (None, state), ttl=ttl, clock=clock)
            return allowed, remaining, retry, reset
        times, costs = state.times, state.costs
        allowed, remaining, retry, reset, expired, append, at, total = log_step(
            self.window, self.limit, times, costs, state.total, now, cost, consume
        )
        for _ in range(expired):
            times.popleft()
            costs.popleft()
        state.total = total
        if append:
            if times and times[-1] == at:
                costs[-1] += append
            else:
                times.append(at)
                costs.append(append)
            # Written by a limiter on another clock (a live entry on ours was decided by
            # live()): re-store it on ours.
            ttl = reset * 1e-6 + _MARGIN
            store.transact(key, lambda _old: (None, state), ttl=ttl, clock=clock)
        elif not times:
            store.delete(key)
        return allowed, remaining, retry, reset


# --------------------------------------------------------------------------------------------
# Shared shell


def _check_timeout(timeout: object) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number or None, got {type(timeout).__name__}")
    if math.isnan(timeout) or timeout < 0:
        raise ConfigurationError(f"timeout must be >= 0 or None, got {timeout!r}")
    return float(timeout)


def _check_key(key: object) -> str:
    if key.__class__ is str and key:
        return key
    return check_name(key, "key")


def _check_remote_key(key: object) -> str:
    checked = _check_key(key)
    if not checked.isascii():
        try:
            checked.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigurationError(
                f"key must be encodable as UTF-8 to be stored on Redis, got {checked!r}"
            ) from None
    return checked


class _LimiterBase:
    """What the sync and async limiters share: validation, keys, replies, waits, outages."""

    _algo: _Algorithm

    def _init_shell(self, backend: object, **kwargs: Any) -> None:
        """Resolve ``backend`` for the sync or async shell, then :meth:`_setup`."""
        raise NotImplementedError

    def _setup(
        self,
        algo: _Algorithm,
        backend: Any,
        clock: Clock | None,
        prefix: str,
        name: str | None,
        on_outage: OutagePolicy,
        pinned_ttl_grace: float,
    ) -> None:
        self._algo = algo
        self.limit = algo.limit
        self.prefix = check_prefix(prefix)
        if name is not None:
            if not isinstance(name, str):
                raise TypeError(f"name must be a str, got {type(name).__name__}")
            if not name or len(name) > 64 or not set(name) <= _NAME_CHARS:
                raise ConfigurationError(
                    f"name must be 1-64 characters from [A-Za-z0-9_.-], got {name!r}"
                )
            algo.part = f"rl.{name}"
        if on_outage not in _POLICIES:
            raise ConfigurationError(f"on_outage must be one of {_POLICIES}, got {on_outage!r}")
        if isinstance(pinned_ttl_grace, bool) or not isinstance(pinned_ttl_grace, int | float):
            raise TypeError("pinned_ttl_grace must be a number")
        if not math.isfinite(pinned_ttl_grace) or pinned_ttl_grace < 0:
            raise ConfigurationError(f"pinned_ttl_grace must be >= 0, got {pinned_ttl_grace!r}")
        self.on_outage: OutagePolicy = on_outage
        self.clock: Clock = SYSTEM_CLOCK if clock is None else clock
        self._pinned = clock is not None
        self.backend = backend
        store = getattr(backend, "store", backend)
        self._store: MemoryBackend | None = store if isinstance(store, MemoryBackend) else None
        if self._store is None and getattr(backend, "kind", None) != "redis":
            raise ConfigurationError(
                f"rate limiters run on the memory or Redis backends, not {backend!r}"
            )
        self._lock = self._store.lock if self._store is not None else None
        self._table = self._store.entry_table() if self._store is not None else {}
        self._fallback: MemoryBackend | None = MemoryBackend() if on_outage == "local" else None
        self._degraded = False
        self._grace_ms = round(pinned_ttl_grace * 1000) if self._pinned else 0
        #: validated key -> namespaced key, so the hot path skips checks and escaping.
        self._known: dict[str, str] = {}
        self._head = f"{self.prefix}:{{"
        self._tail = f"}}:{algo.part}"
        code = algo.code
        p1, p2, p3 = algo.script_params()
        self._spec: tuple[Any, ...] = (code, p1, p2, p3)
        self._lua = lua_script(SCRIPT)

    # -- keys and requests

    def _mkey(self, key: str) -> str:
        if "%" in key or "{" in key or "}" in key:
            key = escape_name(key)
        return self._head + key + self._tail

    def _redis_keys(self, key: str) -> list[str]:
        k = self._mkey(key)
        return [k, k + ".n"] if self._algo.nkeys == 2 else [k]

    def _time_arg(self) -> int | str:
        return self.clock.time_ns() // 1000 if self._pinned else ""

    # -- the memory path (both flavours; it never waits)

    def _memory_decide(self, store: MemoryBackend, key: str, cost: int, consume: bool) -> Verdict4:
        table = store.entry_table()
        clock = self.clock
        with store.lock:
            t = clock.monotonic()
            return self._algo.memory(store, table, clock, t, _now_us(t), key, cost, consume)

    def _memory(self, key: str, cost: int, consume: bool) -> RateLimitDecision:
        key = _check_key(key)
        cost = check_cost(cost, self.limit)
        k = self._known.get(key)
        if k is None:
            k = self._mkey(key)
            # Only exact str keys are remembered, so a lookup by another type never hits.
            if key.__class__ is str:
                if len(self._known) >= _KNOWN_KEYS:
                    self._known.clear()
                self._known[key] = k
        clock = self.clock
        with self._lock:  # type: ignore[union-attr]
            t = clock.monotonic()
            a, r, ra, re = self._algo.memory(
                self._store,  # type: ignore[arg-type]
                self._table,
                clock,
                t,
                _now_us(t),
                k,
                cost,
                consume,
            )
        return decision_from_verdict(a, r, ra, re, self.limit)

    # -- the Redis path

    def _script_args(self, cost: int, consume: bool) -> list[Any]:
        return [self._time_arg(), 1 if consume else 0, self._grace_ms, 1, *self._spec, cost]

    def _reply(self, reply: Sequence[Any]) -> RateLimitDecision:
        if self._degraded:
            self._degraded = False
            logger.warning("%r: the backend answers again; decisions are shared again", self)
        return decision_from_verdict(
            int(reply[0]), int(reply[1]), int(reply[2]), int(reply[3]), self.limit
        )

    def _outage(
        self, exc: BackendUnavailable, key: str, cost: int, consume: bool
    ) -> RateLimitDecision:
        if self.on_outage != "raise" and not self._degraded:
            # Once per outage, not once per decision: an outage can last millions of calls.
            self._degraded = True
            logger.warning(
                "%r: backend unavailable (%s); on_outage=%r until it answers again",
                self,
                exc,
                self.on_outage,
            )
        if self._fallback is not None:
            verdict = self._memory_decide(self._fallback, self._mkey(key), cost, consume)
            return decision_from_verdict(*verdict, self.limit)._replace(degraded=True)
        if self.on_outage == "allow":
            remaining = self.limit - cost if consume else self.limit
            return RateLimitDecision(True, remaining, 0.0, 0.0, self.limit, True)
        raise exc

    # -- reservations (the token bucket's blocking acquire)

    def _reserve_request(self, key: object, cost: object, timeout: object) -> tuple[str, int, int]:
        limit = _check_timeout(timeout)
        checked = self._check_any_key(key)
        cost = check_cost(cost, self.limit)
        if limit is None or limit * 1e6 >= _FOREVER_US:
            return checked, cost, _FOREVER_US
        return checked, cost, int(limit * 1e6)

    def _reserve_local(self, store: MemoryBackend, key: str, cost: int, max_wait: int) -> Verdict4:
        algo = self._algo
        assert isinstance(algo, _Gcra)
        clock = self.clock
        with store.lock:
            t = clock.monotonic()
            return algo.reserve(store, clock, t, _now_us(t), self._mkey(key), cost, max_wait)

    def _reserve_args(self, cost: int, max_wait: int) -> list[Any]:
        return [self._time_arg(), f"w{max_wait}", self._grace_ms, 1, *self._spec, cost]

    def _reserved(
        self, verdict: Sequence[Any], timeout: float | None
    ) -> tuple[RateLimitDecision, float]:
        """The decision of a reservation and the wait until its admission, or raise."""
        reserved, remaining, wait, reset = (int(v) for v in verdict[:4])
        if not reserved:
            decision = decision_from_verdict(False, remaining, wait, reset, self.limit)
            raise RateLimitExceeded(
                f"rate limit: admission needs {decision.retry_after:.6f}s, "
                f"beyond the timeout of {timeout}s",
                decision,
            )
        return RateLimitDecision(True, remaining, 0.0, reset / 1e6, self.limit), wait / 1e6

    def _wait_or_raise(
        self, decision: RateLimitDecision, started: float, timeout: float | None
    ) -> float:
        if timeout is not None:
            waited = self.clock.monotonic() - started
            if waited + decision.retry_after > timeout:
                raise RateLimitExceeded(
                    f"rate limit: admission needs {decision.retry_after:.6f}s more, "
                    f"beyond the timeout of {timeout}s",
                    decision,
                )
        return decision.retry_after

    def _validate(self, key: object, cost: object) -> tuple[str, int]:
        return _check_remote_key(key), check_cost(cost, self.limit)

    def _reset_keys(self, key: object) -> list[str]:
        return self._redis_keys(self._check_any_key(key))

    def _check_any_key(self, key: object) -> str:
        # `is not None`, not truthiness: an empty MemoryBackend is falsy (it has a __len__).
        return _check_key(key) if self._store is not None else _check_remote_key(key)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self._describe()}, backend={self.backend!r}, "
            f"prefix={self.prefix!r})"
        )

    def _describe(self) -> str:
        raise NotImplementedError


class _SyncLimiter(_LimiterBase):
    def _init_shell(self, backend: object, **kwargs: Any) -> None:
        resolved = resolve_backend(backend)
        if inspect.iscoroutinefunction(getattr(resolved, "evalsha", None)):
            raise TypeError(
                f"{type(self).__name__} needs a sync backend, got {resolved!r}: "
                f"use Async{type(self).__name__} with an async backend"
            )
        self._setup(backend=resolved, **kwargs)
        if self._lock is not None:
            self.try_acquire = _fast_try_acquire(self)  # type: ignore[method-assign]

    def try_acquire(self, key: str, cost: int = 1) -> RateLimitDecision:
        """Decide now, without waiting; consume ``cost`` if admitted.

        Args:
            key: what is limited (a user id, an IP…); any non-empty ``str``.
            cost: units this request takes, ``0 <= cost <= limit``.

        Returns:
            The decision; ``retry_after`` says how long until ``cost`` would be admitted.

        Raises:
            TypeError: ``key`` is not a ``str`` or ``cost`` not an ``int``.
            ConfigurationError: empty key, negative cost, or cost above the limit (never
                admissible). Nothing is consumed.
            BackendUnavailable: Redis is unreachable and ``on_outage="raise"``.
        """
        if self._lock is not None:
            return self._memory(key, cost, True)
        return self._remote(key, cost, True)

    def peek(self, key: str, cost: int = 1) -> RateLimitDecision:
        """The decision ``try_acquire(key, cost)`` would make now, without consuming anything."""
        if self._lock is not None:
            return self._memory(key, cost, False)
        return self._remote(key, cost, False)

    def acquire(self, key: str, cost: int = 1, timeout: float | None = None) -> RateLimitDecision:
        """Wait on the limiter's clock until ``cost`` is admitted, then consume it.

        Sleeps exactly ``retry_after`` between attempts (no polling loop). Fails fast: when the
        wait would end after ``timeout`` it raises at once instead of sleeping first.

        Args:
            key: what is limited.
            cost: units this request takes.
            timeout: seconds to wait at most; ``None`` waits as long as needed.

        Returns:
            The admitting decision.

        Raises:
            RateLimitExceeded: admission would come later than ``timeout`` (carries the last
                decision as ``.decision``).
        """
        limit = _check_timeout(timeout)
        started = self.clock.monotonic()
        while True:
            decision = self.try_acquire(key, cost)
            if decision.allowed:
                return decision
            self.clock.sleep(self._wait_or_raise(decision, started, limit))

    def reset(self, key: str) -> None:
        """Forget everything recorded for ``key`` (its next request starts fresh)."""
        keys = self._reset_keys(key)
        if self._store is not None:
            for k in keys[:1]:
                self._store.delete(k)
            return
        self.backend.call(self.backend.client.delete, *keys)
        if self._fallback is not None:
            self._fallback.delete(keys[0])

    def _remote(self, key: str, cost: int, consume: bool) -> RateLimitDecision:
        key, cost = self._validate(key, cost)
        keys = self._redis_keys(key)
        try:
            reply = self.backend.evalsha(self._lua, keys, self._script_args(cost, consume))
        except BackendUnavailable as exc:
            return self._outage(exc, key, cost, consume)
        return self._reply(reply)


class _AsyncLimiter(_LimiterBase):
    def _init_shell(self, backend: object, **kwargs: Any) -> None:
        resolved = resolve_async_backend(backend)
        evalsha = getattr(resolved, "evalsha", None)
        if evalsha is not None and not inspect.iscoroutinefunction(evalsha):
            raise TypeError(
                f"{type(self).__name__} needs an async backend (AsyncRedisBackend, "
                f"AsyncMemoryBackend or a URL), got {resolved!r}"
            )
        self._setup(backend=resolved, **kwargs)
        if self._lock is not None:
            fast = _fast_try_acquire(self)

            async def try_acquire(key: str, cost: int = 1) -> RateLimitDecision:
                return fast(key, cost)  # type: ignore[no-any-return]

            try_acquire.__doc__ = _AsyncLimiter.try_acquire.__doc__
            self.try_acquire = try_acquire  # type: ignore[method-assign]

    async def try_acquire(self, key: str, cost: int = 1) -> RateLimitDecision:
        """See :meth:`TokenBucket.try_acquire`."""
        if self._lock is not None:
            return self._memory(key, cost, True)
        return await self._remote(key, cost, True)

    async def peek(self, key: str, cost: int = 1) -> RateLimitDecision:
        """See :meth:`TokenBucket.peek`."""
        if self._lock is not None:
            return self._memory(key, cost, False)
        return await self._remote(key, cost, False)

    async def acquire(
        self,
        key: str,
        cost: int = 1,
        timeout: float | None = None,  # noqa: ASYNC109 - waits on the limiter's clock
    ) -> RateLimitDecision:
        """See :meth:`TokenBucket.acquire`; waits with the clock's ``asleep``."""
        limit = _check_timeout(timeout)
        started = self.clock.monotonic()
        while True:
            decision = await self.try_acquire(key, cost)
            if decision.allowed:
                return decision
            await self.clock.asleep(self._wait_or_raise(decision, started, limit))

    async def reset(self, key: str) -> None:
        """See :meth:`TokenBucket.reset`."""
        keys = self._reset_keys(key)
        if self._store is not None:
            self._store.delete(keys[0])
            return
        await self.backend.call(self.backend.client.delete, *keys)
        if self._fallback is not None:
            self._fallback.delete(keys[0])

    async def _remote(self, key: str, cost: int, consume: bool) -> RateLimitDecision:
        key, cost = self._validate(key, cost)
        keys = self._redis_keys(key)
        try:
            reply = await self.backend.evalsha(self._lua, keys, self._script_args(cost, consume))
        except BackendUnavailable as exc:
            return self._outage(exc, key, cost, consume)
        return self._reply(reply)


# --------------------------------------------------------------------------------------------
# Public classes: parameters and docs; the behaviour is all in the shells above.


class _BucketSettings(_LimiterBase):
    """The constructor :class:`TokenBucket` and :class:`AsyncTokenBucket` share."""

    params: TokenBucketParams

    def __init__(
        self,
        rate: float,
        capacity: int,
        *,
        backend: object = None,
        clock: Clock | None = None,
        prefix: str = DEFAULT_PREFIX,
        name: str | None = None,
        on_outage: OutagePolicy = "raise",
        pinned_ttl_grace: float = 3600.0,
    ) -> None:
        self.params = TokenBucketParams(rate, capacity)
        self._init_shell(
            backend,
            algo=_Gcra(self.params),
            clock=clock,
            prefix=prefix,
            name=name,
            on_outage=on_outage,
            pinned_ttl_grace=pinned_ttl_grace,
        )

    def _describe(self) -> str:
        return f"rate={self.params.rate!r}, capacity={self.params.capacity}"


class _WindowSettings(_LimiterBase):
    """The constructor the sliding log and counter limiters (sync and async) share."""

    params: LogParams | CounterParams
    _settings: ClassVar[tuple[type[LogParams | CounterParams], type[_Log | _Counter]]]

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        backend: object = None,
        clock: Clock | None = None,
        prefix: str = DEFAULT_PREFIX,
        name: str | None = None,
        on_outage: OutagePolicy = "raise",
        pinned_ttl_grace: float = 3600.0,
    ) -> None:
        params_type, algo_type = self._settings
        self.params = params_type(limit, window)
        self._init_shell(
            backend,
            algo=algo_type(self.params),  # type: ignore[arg-type]
            clock=clock,
            prefix=prefix,
            name=name,
            on_outage=on_outage,
            pinned_ttl_grace=pinned_ttl_grace,
        )

    def _describe(self) -> str:
        return f"limit={self.params.limit}, window={self.params.window!r}"


class TokenBucket(_BucketSettings, _SyncLimiter):
    """Token bucket as GCRA: ``rate`` tokens per second, bursts of up to ``capacity``.

    A new key starts full. Stored state: one number per key (the theoretical arrival time).

    Args:
        rate: tokens added per second (> 0, at most 1e6).
        capacity: bucket size, a whole number >= 1.
        backend: a backend object, a URL (``memory://``, ``redis://…``,
            ``redis+cluster://…``) or a redis-py client (``redis.asyncio`` for the asyncio
            limiters; it stays yours to close); default a fresh in-memory backend.
        clock: time source. Default: the system clock for memory, the Redis server's ``TIME``
            for Redis. Passing one explicitly pins Redis decisions to its wall time.
        prefix: key namespace.
        name: the last key part (``[A-Za-z0-9_.-]``); default derived from the settings.
        on_outage: ``"raise"`` (fail closed), ``"allow"`` (fail open) or ``"local"``
            (per-process in-memory fallback) when Redis is unreachable.
        pinned_ttl_grace: seconds added to Redis TTLs when ``clock`` is pinned.
    """

    def acquire(self, key: str, cost: int = 1, timeout: float | None = None) -> RateLimitDecision:
        """Wait until ``cost`` tokens are admitted, then return; fail fast beyond ``timeout``.

        The admission instant is booked first (one decision, one round trip on Redis) and then
        waited for on the limiter's clock, so concurrent waiters are served in arrival order and
        the configured rate is kept exactly, however late a sleep wakes up. A caller that is
        interrupted while waiting forfeits its booked tokens.

        Args:
            key: what is limited.
            cost: tokens this request takes.
            timeout: seconds to wait at most; ``None`` waits as long as needed.

        Returns:
            The admitting decision.

        Raises:
            RateLimitExceeded: admission would come later than ``timeout``; nothing is booked.
        """
        key, cost, max_wait = self._reserve_request(key, cost, timeout)
        if self._store is not None:
            verdict = self._reserve_local(self._store, key, cost, max_wait)
        else:
            try:
                verdict = self.backend.evalsha(
                    self._lua, self._redis_keys(key), self._reserve_args(cost, max_wait)
                )
            except BackendUnavailable:
                # The outage policy is applied by try_acquire: wait the generic way.
                return super().acquire(key, cost, timeout)
        decision, wait = self._reserved(verdict, timeout)
        self.clock.sleep(wait)
        return decision


def _fast_try_acquire(limiter: _LimiterBase) -> Any:
    """The memory ``try_acquire`` of ``limiter``, specialised for its algorithm."""
    if isinstance(limiter._algo, _Gcra):
        return _fast_gcra(limiter)
    return _fast_live(limiter)


def _entry_cache(
    limiter: _LimiterBase,
) -> tuple[dict[str, list[Any]], Callable[[str, int], RateLimitDecision]]:
    """A limiter's memory of its keys' entry lists, and the general path that fills it.

    Each key seen remembers its entry list in the backend's table (see
    :meth:`MemoryBackend.entry_table <dsprims.backends.memory.MemoryBackend.entry_table>`): a
    list is never reused and gets the deadline ``-inf`` when it leaves the table, so under the
    lock "the deadline has not passed on our clock" proves it is still the key's live entry.
    Only entries written on the limiter's clock are remembered, and only for exact ``str`` keys.

    Returns:
        ``(entries, general)``: ``entries`` maps a key to its entry list (live or detached);
        ``general(key, cost)`` decides through the general path (validation, errors, the core)
        and then remembers the key's entry.
    """
    lock = limiter._lock
    assert lock is not None
    slow = limiter._memory
    table = limiter._table
    known = limiter._known
    clock = limiter.clock
    entries: dict[str, list[Any]] = {}

    def general(key: str, cost: int) -> RateLimitDecision:
        result = slow(key, cost, True)
        if key.__class__ is str:
            with lock:
                entry = table.get(known.get(key, ""))
                if entry is not None and entry[2] is clock:
                    if len(entries) >= _KNOWN_KEYS:
                        entries.clear()
                    entries[key] = entry
        return result

    return entries, general


# Bound once for the specialised try_acquire functions below (module globals, not closure
# variables): the default cost (compared by identity: small ints are cached objects), rounding,
# and tuple.__new__ to build a RateLimitDecision without its Python-level __new__.
_ONE: Final = 1
_ceil: Final = math.ceil
_floor: Final = math.floor
_make: Final = cast(
    Callable[[type[RateLimitDecision], tuple[Any, ...]], RateLimitDecision], tuple.__new__
)

_Hot = tuple[
    Callable[[], None],  # take
    Callable[[None], None],  # give
    deque[None],  # waiters
    Callable[[], None],  # wake
    Callable[[], float],  # monotonic
    int,  # limit
    Callable[[str, int, bool], RateLimitDecision],  # slow
    dict[str, list[Any]],  # entries
    Callable[[str, int], RateLimitDecision],  # general
]


def _hot_bindings(limiter: _LimiterBase) -> _Hot:
    """The per-limiter values every specialised ``try_acquire`` binds once, as closure
    variables (constants stay module globals: each call copies every closure variable into
    its frame).

    The backend lock is used through its raw token (see
    :class:`~dsprims._mutex.ReentrantMutex`): ``take()``, and on ``IndexError`` the general
    path, which waits for the lock or re-enters it; ``give(None)`` and ``wake()`` when
    ``waiters``. The general path is only ever called after the token went back.

    Returns:
        ``(take, give, waiters, wake, mono, limit, slow, entries, general)``: the backend
        lock's token operations, the clock's ``monotonic``, the limit, the checking path
        ``limiter._memory``, and :func:`_entry_cache`'s pair.
    """
    lock = limiter._lock
    assert lock is not None
    entries, general = _entry_cache(limiter)
    return (
        lock.take,
        lock.give,
        lock.waiters,
        lock.wake,
        limiter.clock.monotonic,
        limiter._algo.limit,
        limiter._memory,
        entries,
        general,
    )


def _fast_live(limiter: _LimiterBase) -> Any:
    """``try_acquire`` of a memory sliding log or sliding-window counter, for the common case.

    A known key's live entry (see :func:`_entry_cache`) is decided by the algorithm's ``live``,
    which runs the pure core (:func:`~dsprims.ratelimit.core.log_step` or
    :func:`~dsprims.ratelimit.core.counter_step`) and updates the entry in place: one dict
    lookup, one lock acquire/release, one clock read, the core, and the result tuple. Anything
    else takes the general path, which also raises the errors.
    """
    algo = limiter._algo
    assert isinstance(algo, _Log | _Counter)
    live = algo.live
    take, give, waiters, wake, mono, limit, slow, entries, general = _hot_bindings(limiter)

    def try_acquire(key: str, cost: int = 1) -> RateLimitDecision:
        try:
            entry = entries[key]
        except (KeyError, TypeError):  # a new key or an unhashable one: validated there
            return general(key, cost)
        # `cost is _ONE`: the default cost needs no checks (small ints are cached objects).
        if key.__class__ is not str or (
            cost is not _ONE and (cost.__class__ is not int or not 0 <= cost <= limit)
        ):
            return slow(key, cost, True)
        try:
            take()
        except IndexError:  # the lock is held: wait for it (or re-enter it) there
            return general(key, cost)
        except BaseException:  # e.g. KeyboardInterrupt as take() returned: give it back
            give(None)
            wake()
            raise
        try:
            t = mono()
            # Not expired, nor detached from the table (deadline -inf); and the log does not
            # empty (a verdict of None: the general path deletes the key).
            verdict = live(entry, t, _floor(t * 1e6 + 0.5), cost, True) if t < entry[1] else None
        finally:
            give(None)
            if waiters:
                wake()
        if verdict is None:
            return general(key, cost)
        allowed, remaining, retry, reset = verdict
        if allowed:
            return _make(RateLimitDecision, (True, remaining, 0.0, reset / 1e6, limit, False))
        return _make(
            RateLimitDecision, (False, remaining, (retry + 1) / 1e6, reset / 1e6, limit, False)
        )

    try_acquire.__doc__ = _SyncLimiter.try_acquire.__doc__
    return try_acquire


#: Adding and then subtracting ``1.5 * 2**52`` rounds a double ``x`` with ``|x| < 2**51`` to the
#: nearest integer exactly (the sum lies in ``[2**52, 2**53)``, where doubles are spaced 1 apart).
_ROUNDER: Final = 1.5 * 2.0**52
#: The clock readings (seconds, about 35.7 years either side of 0) the token bucket's float fast
#: path takes: ``|now|`` stays below 2**50 µs, well inside the range of ``_ROUNDER``.
_FLOAT_T: Final = 2.0**50 / 1e6
#: The stored time plus the cost (µs) must stay below this on the fast path: with ``|now|`` below
#: 2**50, every sum and difference it computes then stays below 2**53.
_FLOAT_TAT: Final = 2.0**52


def _fast_gcra(limiter: _LimiterBase) -> Any:
    """``try_acquire`` of a memory token bucket, specialised for the common case.

    The GCRA step of :func:`~dsprims.ratelimit.core.gcra_decide` (with ``consume=True``) is
    written out inline here: on the memory backend a call of the core and the tuple it returns
    would cost about as much as the whole decision. ``tests/ratelimit/test_memory.py`` pins this
    copy to the core with differential hypothesis tests (every decision of random traffic under
    a ``ManualClock``, denials, zero costs, expiries, resets, reservations and a second limiter
    sharing the keys included, and clocks at arbitrary, huge, negative or stepped-back times,
    equals the core's).

    The step runs on integer-valued doubles rather than Python ints. The core's integers are
    µs timestamps (above 2**30, beyond CPython's single-digit integer fast paths) and, for a
    bucket in debt, debts of the same size; float operations cost the same at any magnitude.
    The arithmetic stays exact because every value is a whole number of µs below 2**53, which
    doubles represent exactly, and sums, differences and comparisons of such numbers are exact
    (the guards below send anything larger to the general path). The µs timestamp
    ``floor(t * 1e6 + 0.5)`` of ``_now_us`` is computed without leaving floats: ``_ROUNDER``
    rounds to the nearest integer, and one comparison turns that into the floor. Divisions are
    correctly rounded, so ``debt / 1e6`` is the core's ``reset_us / 1e6`` to the bit, and for
    a whole ``x < 2**53`` ``ceil(x / T)`` is the exact ceiling (a quotient that is not whole is
    at least ``1 / T`` from the next integer, more than its rounding error ``x / T * 2**-53``),
    which gives ``remaining = capacity - ceil(debt / T) = (tau - debt) // T`` since
    ``tau = capacity * T``. The stored time becomes an integer-valued float (see :class:`_Gcra`).

    It is written in terms of the debt ``tat - now`` (what the bucket owes, in µs). A full
    bucket taking the default cost, the common case below the limit, returns one prebuilt
    decision (immutable, and equal to what the core gives: ``remaining = capacity - 1``,
    ``reset_after = T``), and a denial at the default cost reuses the last one when its debt
    repeats (a flood of denials within one µs); every other outcome builds a new one. The
    entry's deadline stays ``t + reset_after + margin``, as on the general path.

    Everything is bound once in a closure, and each key remembers its entry list
    (:func:`_entry_cache`). A decision is then one dict lookup, the backend lock's token taken
    and given back (two C calls, see :func:`_hot_bindings`), one clock read, the arithmetic,
    and the result tuple. Anything unusual (a new or expired key, a key that is not exactly a
    ``str`` (an object merely equal to a remembered key must still be rejected), a cost that
    fails the checks, a clock or a stored time beyond the exact float range) takes the general
    path, which runs the core itself and raises the errors.
    """
    algo = limiter._algo
    assert isinstance(algo, _Gcra)
    interval = float(algo.interval)
    tolerance = float(algo.tolerance)
    # Only per-limiter values are closure variables (each call copies them into its frame);
    # the float constants are literals (cheaper to load than globals): 1125899906.842624 is
    # _FLOAT_T, 6755399441055744.0 _ROUNDER, 4503599627370496.0 _FLOAT_TAT and 0.001 _MARGIN
    # (a test checks that they are).
    one = _ONE
    take, give, waiters, wake, mono, limit, slow, entries, general = _hot_bindings(limiter)
    # The default cost on a full bucket: its decision (reset_after = T / 1e6, the same
    # correctly rounded float as the core's int / int) and the entry's lifetime beyond now.
    period = algo.interval / 1000000
    hold = period + _MARGIN
    full = _make(RateLimitDecision, (True, limit - 1, 0.0, period, limit, False))
    # The last denial at the default cost, and its debt: such a denial is a function of the
    # debt alone, and a flood of denials within one µs repeats it. Read and written under the
    # lock. -1.0 matches no debt a denial sees (debt > tau >= 0).
    denied_debt = -1.0
    denied = full

    def try_acquire(key: str, cost: int = 1) -> RateLimitDecision:
        nonlocal denied_debt, denied
        try:
            entry = entries[key]
        except (KeyError, TypeError):  # a new key or an unhashable one: validated there
            return general(key, cost)
        # `cost is one`: the default cost needs no checks (small ints are cached objects).
        if cost is one:
            spend = interval
        elif cost.__class__ is int and 0 <= cost <= limit:
            spend = cost * interval  # cost * T <= tau < 2**51: exact
        else:
            return slow(key, cost, True)
        if key.__class__ is not str:
            return slow(key, cost, True)
        try:
            take()
        except IndexError:  # the lock is held: wait for it (or re-enter it) there
            return general(key, cost)
        except BaseException:  # e.g. KeyboardInterrupt as take() returned: give it back
            give(None)
            wake()
            raise
        try:
            t = mono()
            if t >= entry[1] or t >= 1125899906.842624 or t <= -1125899906.842624:
                # Expired, or detached from the table (deadline -inf), or beyond the float
                # range: the general path decides, once the token is back. (This branch comes
                # first so that its tests jump a short way: CPython 3.11 specialises a float
                # comparison only when its jump needs no EXTENDED_ARG.)
                pass
            else:
                # now = _now_us(t) = floor(v), as a float: round v to the nearest integer,
                # then step down if that went up.
                v = t * 1e6 + 0.5
                now = v + 6755399441055744.0 - 6755399441055744.0
                if now > v:
                    now -= 1.0
                # gcra_decide(interval, tolerance, entry[0], now, cost, consume=True),
                # inlined: new = tat + cost*T, debt = new - now = owed + cost*T with
                # owed = tat - now. Exact while new < 2**52 (a stored int converts exactly
                # below that); a larger new (rounded if it came from an int beyond 2**53) makes
                # debt > 2**52 - 2**50 > tau, a denial, which checks it before using it.
                new = entry[0] + spend
                debt = new - now
                if debt <= spend:
                    # owed <= 0: a full bucket admits any valid cost (cost * T <= tau).
                    entry[0] = now + spend
                    if cost is one:
                        entry[1] = t + hold
                        return full
                    reset = spend / 1e6
                    entry[1] = t + reset + 0.001
                    return _make(RateLimitDecision, (True, limit - cost, 0.0, reset, limit, False))
                if debt <= tolerance:
                    entry[0] = new
                    reset = debt / 1e6
                    entry[1] = t + reset + 0.001
                    remaining = limit - _ceil(debt / interval)
                    return _make(RateLimitDecision, (True, remaining, 0.0, reset, limit, False))
                if new < 4503599627370496.0:  # else beyond the exact range: the core decides
                    # Denied: nothing stored. retry_after = allow_at - now = debt - tau,
                    # reset_after = owed.
                    if cost is one:
                        # owed > tau - T = (capacity - 1) * T: no whole token is left (the
                        # core's (tau - owed) // T is <= 0, clamped to 0).
                        if debt != denied_debt:
                            retry = (debt - tolerance + 1) / 1e6
                            denied_debt = debt
                            denied = _make(
                                RateLimitDecision,
                                (False, 0, retry, (debt - spend) / 1e6, limit, False),
                            )
                        return denied
                    # A reservation (gcra_reserve) may have pushed tat past now + tau: no
                    # tokens then, not fewer than none.
                    owed = debt - spend
                    remaining = limit - _ceil(owed / interval)
                    return _make(
                        RateLimitDecision,
                        (
                            False,
                            remaining if remaining > 0 else 0,
                            (debt - tolerance + 1) / 1e6,
                            owed / 1e6,
                            limit,
                            False,
                        ),
                    )
        finally:
            give(None)
            if waiters:
                wake()
        return general(key, cost)

    try_acquire.__doc__ = _SyncLimiter.try_acquire.__doc__
    return try_acquire


class SlidingWindowLog(_WindowSettings, _SyncLimiter):
    """Exact sliding log: at most ``limit`` admitted cost in any window of ``window`` seconds.

    A cost admitted at time t counts during ``[t, t + window)``. Stores one entry per distinct
    admission time (microsecond resolution), pruned from the front: O(1) amortised per decision
    whatever the number of live entries, plus O(cost) to compute the ``retry_after`` of a denial.

    Args:
        limit: the admitted cost per window, a whole number >= 1.
        window: the window in seconds (> 0, at least 1 µs).
        backend: a backend object, a URL (``memory://``, ``redis://…``,
            ``redis+cluster://…``) or a redis-py client (``redis.asyncio`` for the asyncio
            limiters; it stays yours to close); default a fresh in-memory backend.
        clock: time source. Default: the system clock for memory, the Redis server's ``TIME``
            for Redis. Passing one explicitly pins Redis decisions to its wall time.
        prefix: key namespace.
        name: the last key part (``[A-Za-z0-9_.-]``); default derived from the settings.
        on_outage: ``"raise"`` (fail closed), ``"allow"`` (fail open) or ``"local"``
            (per-process in-memory fallback) when Redis is unreachable.
        pinned_ttl_grace: seconds added to Redis TTLs when ``clock`` is pinned.
    """

    params: LogParams
    _settings = (LogParams, _Log)


class SlidingWindowCounter(_WindowSettings, _SyncLimiter):
    """Sliding-window counter: the two-bucket weighted approximation of a sliding window.

    Estimates the count in the last ``window`` seconds as
    ``previous * (window - elapsed) / window + current``. Three integers per key.

    Args:
        limit: the count per window, a whole number >= 1.
        window: the window in seconds.
        backend: a backend object, a URL (``memory://``, ``redis://…``,
            ``redis+cluster://…``) or a redis-py client (``redis.asyncio`` for the asyncio
            limiters; it stays yours to close); default a fresh in-memory backend.
        clock: time source. Default: the system clock for memory, the Redis server's ``TIME``
            for Redis. Passing one explicitly pins Redis decisions to its wall time.
        prefix: key namespace.
        name: the last key part (``[A-Za-z0-9_.-]``); default derived from the settings.
        on_outage: ``"raise"`` (fail closed), ``"allow"`` (fail open) or ``"local"``
            (per-process in-memory fallback) when Redis is unreachable.
        pinned_ttl_grace: seconds added to Redis TTLs when ``clock`` is pinned.
    """

    params: CounterParams
    _settings = (CounterParams, _Counter)


class AsyncTokenBucket(_BucketSettings, _AsyncLimiter):
    """The asyncio twin of :class:`TokenBucket` (``AsyncMemoryBackend`` or ``AsyncRedisBackend``).

    Takes the same arguments as :class:`TokenBucket`; ``backend`` is an async backend or URL
    (a :class:`~dsprims.MemoryBackend` is wrapped to share its state).
    """

    async def acquire(
        self,
        key: str,
        cost: int = 1,
        timeout: float | None = None,  # noqa: ASYNC109 - waits on the limiter's clock
    ) -> RateLimitDecision:
        """See :meth:`TokenBucket.acquire` (books the admission, then ``asleep``)."""
        key, cost, max_wait = self._reserve_request(key, cost, timeout)
        if self._store is not None:
            verdict = self._reserve_local(self._store, key, cost, max_wait)
        else:
            try:
                verdict = await self.backend.evalsha(
                    self._lua, self._redis_keys(key), self._reserve_args(cost, max_wait)
                )
            except BackendUnavailable:
                return await super().acquire(key, cost, timeout)
        decision, wait = self._reserved(verdict, timeout)
        await self.clock.asleep(wait)
        return decision


class AsyncSlidingWindowLog(_WindowSettings, _AsyncLimiter):
    """The asyncio twin of :class:`SlidingWindowLog`.

    Takes the same arguments as :class:`SlidingWindowLog`; ``backend`` is an async backend or URL
    (a :class:`~dsprims.MemoryBackend` is wrapped to share its state).
    """

    params: LogParams
    _settings = (LogParams, _Log)


class AsyncSlidingWindowCounter(_WindowSettings, _AsyncLimiter):
    """The asyncio twin of :class:`SlidingWindowCounter`.

    Takes the same arguments as :class:`SlidingWindowCounter`; ``backend`` is an async backend
    or URL (a :class:`~dsprims.MemoryBackend` is wrapped to share its state).
    """

    params: CounterParams
    _settings = (CounterParams, _Counter)
