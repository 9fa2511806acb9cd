"""Several limits checked as one: :class:`CompositeLimiter` and :class:`AsyncCompositeLimiter`.

A composite admits a request only when every limiter admits it, and a denial consumes from none
(e.g. 10/s per user *and* 1000/s for the whole service). The check is atomic:

* memory: every limiter's core runs under the backend lock, first as a peek, then (only if all
  admit) as a consume, all at one instant;
* Redis: the same two phases run inside ONE ``EVALSHA`` of ``ratelimit_decide.lua``.

Redis Cluster: one script can only touch keys of one hash slot, and the key of a limit is its
hash tag. A composite whose limiters all limit the same key (``try_acquire("user-42")``) is one
script, as is any composite on a standalone server. Over keys in different slots
(``try_acquire(["user-42", "global"])`` on a Cluster) the limiters of each slot decide atomically
in turn, in slot order, one round trip each; when a later slot denies, the earlier ones are
refunded (one more round trip each), so a denial still consumes from none. What this gives up
is isolation, never the limit: between the consume and the refund, other requests may find those
units taken and be denied. If Redis fails between the two, the units stay taken until they would
have expired (stricter, never looser).

The decision's ``remaining`` is the smallest of the limiters', ``retry_after`` and
``reset_after`` the largest, and ``limit`` that of the limiter with the least remaining.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence
from typing import Any

from dsprims.backends.memory import MemoryBackend
from dsprims.errors import BackendUnavailable, ConfigurationError
from dsprims.ratelimit.core import check_cost
from dsprims.ratelimit.decision import RateLimitDecision
from dsprims.ratelimit.limiters import (
    OutagePolicy,
    Verdict4,
    _AsyncLimiter,
    _check_timeout,
    _LimiterBase,
    _now_us,
    _SyncLimiter,
)

__all__ = ["AsyncCompositeLimiter", "CompositeLimiter"]

logger = logging.getLogger(__name__)

Keys = str | Sequence[str]


def _chunks(reply: Sequence[Any]) -> list[Sequence[Any]]:
    """The per-limiter verdicts of a script reply (4 integers each, then the time used)."""
    return [reply[i : i + 4] for i in range(0, len(reply) - 1, 4)]


class _CompositeBase:
    _limiters: tuple[_LimiterBase, ...]

    def _setup(self, limiters: object, flavour: type, on_outage: OutagePolicy | None) -> None:
        if isinstance(limiters, str | bytes) or not isinstance(limiters, Sequence):
            raise TypeError("limiters must be a sequence of limiters")
        items = tuple(limiters)
        if not items:
            raise ConfigurationError("limiters must not be empty")
        for item in items:
            if not isinstance(item, flavour):
                raise TypeError(
                    f"every limiter must be a {'sync' if flavour is _SyncLimiter else 'async'} "
                    f"dsprims rate limiter, got {type(item).__name__}"
                )
        first = items[0]
        for item in items[1:]:
            same_store = first._store is not None and item._store is first._store
            same_redis = first._store is None and item.backend is first.backend
            if not (same_store or same_redis):
                raise ConfigurationError(
                    "all limiters of a composite must share one backend (one decision, one store)"
                )
            if item.clock is not first.clock or item._pinned != first._pinned:
                raise ConfigurationError("all limiters of a composite must share one clock")
        spaces = [(item.prefix, item._algo.part) for item in items]
        if len(set(spaces)) != len(spaces):
            raise ConfigurationError(
                "two limiters of the composite have the same settings and prefix, so they would "
                "share state for a key: give one of them another name= or prefix="
            )
        self._limiters = items
        self._first = first
        self.clock = first.clock
        self.on_outage: OutagePolicy = first.on_outage if on_outage is None else on_outage
        if self.on_outage not in ("raise", "allow", "local"):
            raise ConfigurationError(f"on_outage must be raise, allow or local: {on_outage!r}")
        self._fallback = MemoryBackend() if self.on_outage == "local" else None
        self._degraded = False
        self._cluster = bool(getattr(first.backend, "is_cluster", False))

    @property
    def limiters(self) -> tuple[Any, ...]:
        """The limiters, in order."""
        return self._limiters

    def _request(self, key: object, cost: object) -> tuple[list[str], int]:
        check = self._first._check_any_key
        if isinstance(key, str):
            keys = [check(key)] * len(self._limiters)
        elif isinstance(key, Sequence) and not isinstance(key, bytes):
            keys = [check(k) for k in key]
            if len(keys) != len(self._limiters):
                raise ConfigurationError(
                    f"key must be one str or one per limiter ({len(self._limiters)}), "
                    f"got {len(keys)}"
                )
        else:
            raise TypeError(f"key must be a str or a sequence of str, got {type(key).__name__}")
        checked = 0
        for limiter in self._limiters:
            checked = check_cost(cost, limiter.limit)  # an int subclass becomes its int
        return keys, checked

    def _memory_verdicts(
        self, store: MemoryBackend, keys: list[str], cost: int, consume: bool
    ) -> list[Verdict4]:
        table = store.entry_table()
        clock = self.clock
        pairs = list(zip(self._limiters, keys, strict=True))
        with store.lock:
            t = clock.monotonic()
            now = _now_us(t)
            verdicts = [
                lim._algo.memory(store, table, clock, t, now, lim._mkey(k), cost, False)
                for lim, k in pairs
            ]
            if consume and all(v[0] for v in verdicts):
                verdicts = [
                    lim._algo.memory(store, table, clock, t, now, lim._mkey(k), cost, True)
                    for lim, k in pairs
                ]
        return verdicts

    def _groups(self, keys: list[str]) -> list[list[int]]:
        """Limiter indices grouped by cluster slot: one group unless the keys span slots."""
        n = len(self._limiters)
        if not self._cluster or len(set(keys)) == 1:
            return [list(range(n))]
        from redis.crc import key_slot

        slots: dict[int, list[int]] = {}
        for i, (lim, k) in enumerate(zip(self._limiters, keys, strict=True)):
            slot = key_slot(lim._redis_keys(k)[0].encode("utf-8", "surrogatepass"))
            slots.setdefault(slot, []).append(i)
        return [slots[slot] for slot in sorted(slots)]

    def _script(
        self, group: list[int], keys: list[str], cost: int, mode: int | str, at: int | None = None
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of one script call for the limiters in ``group``."""
        rkeys: list[str] = []
        time_arg = self._first._time_arg() if at is None else at
        args: list[Any] = [time_arg, mode, self._first._grace_ms, len(group)]
        for i in group:
            lim = self._limiters[i]
            rkeys += lim._redis_keys(keys[i])
            args += [*lim._spec, cost]
        return rkeys, args

    def _steps(
        self, keys: list[str], cost: int, consume: bool
    ) -> Generator[tuple[list[str], list[Any]], Any, RateLimitDecision]:
        """The Redis protocol of one decision, as script calls for a sync or async driver.

        One call when the keys share a slot. Across slots (Redis Cluster only): each slot's
        limiters decide atomically in turn; on a denial the groups that already consumed are
        refunded, so a denial consumes from none (others may see those units taken for the
        duration of a round trip: never more admitted, briefly fewer).
        """
        groups = self._groups(keys)
        mode = 1 if consume else 0
        if len(groups) == 1:
            reply = yield self._script(groups[0], keys, cost, mode)
            return self._reply(reply)
        verdicts: list[Sequence[Any]] = []
        seen: list[int] = []
        consumed: list[tuple[list[int], int]] = []
        for group in groups:
            reply = yield self._script(group, keys, cost, mode)
            mine = _chunks(reply)
            verdicts += mine
            seen += group
            if consume and not all(int(v[0]) for v in mine):
                for done, at in consumed:
                    yield self._script(done, keys, cost, "r", at)
                return self._combine(verdicts, seen)
            consumed.append((group, int(reply[-1])))
        return self._combine(verdicts, seen)

    def _combine(
        self, verdicts: Sequence[Sequence[Any]], group: Sequence[int] | None = None
    ) -> RateLimitDecision:
        """One decision from the verdicts of the limiters in ``group`` (default: all, in order)."""
        if group is None:
            group = range(len(verdicts))
        allowed = all(int(v[0]) for v in verdicts)
        best = 0
        for i, v in enumerate(verdicts):
            if int(v[1]) < int(verdicts[best][1]):
                best = i
        remaining = int(verdicts[best][1])
        reset = max(int(v[3]) for v in verdicts) / 1e6
        limit = self._limiters[group[best]].limit
        if allowed:
            return RateLimitDecision(True, remaining, 0.0, reset, limit)
        retry = max(int(v[2]) for v in verdicts if not int(v[0]))
        return RateLimitDecision(False, remaining, (retry + 1) / 1e6, reset, limit)

    def _reply(self, reply: Sequence[Any]) -> RateLimitDecision:
        return self._combine(_chunks(reply))

    def _outage(
        self, exc: BackendUnavailable, keys: list[str], cost: int, consume: bool
    ) -> RateLimitDecision:
        if self.on_outage != "raise" and not self._degraded:
            self._degraded = True  # log once per outage, not once per decision
            logger.warning(
                "composite limiter: backend unavailable (%s); on_outage=%r until it answers",
                exc,
                self.on_outage,
            )
        if self._fallback is not None:
            verdicts = self._memory_verdicts(self._fallback, keys, cost, consume)
            return self._combine(verdicts)._replace(degraded=True)
        if self.on_outage == "allow":
            limit = min(lim.limit for lim in self._limiters)
            remaining = limit - cost if consume else limit
            return RateLimitDecision(True, remaining, 0.0, 0.0, limit, True)
        raise exc


class CompositeLimiter(_CompositeBase):
    """Admit only when every limiter admits; a denial consumes from none.

    Args:
        limiters: sync limiters (:class:`TokenBucket`, :class:`SlidingWindowLog`,
            :class:`SlidingWindowCounter`) sharing one backend and one clock.
        on_outage: the outage policy; default that of the first limiter.

    Examples:
        >>> from dsprims import MemoryBackend, TokenBucket
        >>> store = MemoryBackend()
        >>> both = CompositeLimiter([TokenBucket(1, 2, backend=store),
        ...                          TokenBucket(10, 3, backend=store)])
        >>> [both.try_acquire("alice").allowed for _ in range(3)]
        [True, True, False]
    """

    def __init__(
        self, limiters: Sequence[_SyncLimiter], *, on_outage: OutagePolicy | None = None
    ) -> None:
        self._setup(limiters, _SyncLimiter, on_outage)

    def try_acquire(self, key: Keys, cost: int = 1) -> RateLimitDecision:
        """Decide now for every limiter at once; consume only if all admit.

        Args:
            key: one key for every limiter, or a sequence with one key per limiter.
            cost: units this request takes from each limiter.
        """
        return self._decide(key, cost, True)

    def peek(self, key: Keys, cost: int = 1) -> RateLimitDecision:
        """The decision :meth:`try_acquire` would make now, consuming nothing."""
        return self._decide(key, cost, False)

    def acquire(self, key: Keys, cost: int = 1, timeout: float | None = None) -> RateLimitDecision:
        """Wait (on the limiters' clock) until every limiter admits, like ``TokenBucket.acquire``.

        Raises:
            RateLimitExceeded: admission would come later than ``timeout``.
        """
        limit = _check_timeout(timeout)
        started = self.clock.monotonic()
        while True:
            decision = self._decide(key, cost, True)
            if decision.allowed:
                return decision
            self.clock.sleep(self._first._wait_or_raise(decision, started, limit))

    def reset(self, key: Keys) -> None:
        """Reset ``key`` in every limiter."""
        keys, _ = self._request(key, 0)
        for lim, k in zip(self._limiters, keys, strict=True):
            lim.reset(k)  # type: ignore[attr-defined]

    def _decide(self, key: Keys, cost: int, consume: bool) -> RateLimitDecision:
        keys, cost = self._request(key, cost)
        store = self._first._store
        if store is not None:
            return self._combine(self._memory_verdicts(store, keys, cost, consume))
        steps = self._steps(keys, cost, consume)
        try:
            call = next(steps)
            while True:
                call = steps.send(self._first.backend.evalsha(self._first._lua, *call))
        except StopIteration as done:
            self._degraded = False
            decision: RateLimitDecision = done.value
            return decision
        except BackendUnavailable as exc:
            return self._outage(exc, keys, cost, consume)


class AsyncCompositeLimiter(_CompositeBase):
    """The asyncio twin of :class:`CompositeLimiter` (takes async limiters).

    Args:
        limiters: async limiters sharing one backend and one clock.
        on_outage: the outage policy; default that of the first limiter.
    """

    def __init__(
        self, limiters: Sequence[_AsyncLimiter], *, on_outage: OutagePolicy | None = None
    ) -> None:
        self._setup(limiters, _AsyncLimiter, on_outage)

    async def try_acquire(self, key: Keys, cost: int = 1) -> RateLimitDecision:
        """See :meth:`CompositeLimiter.try_acquire`."""
        return await self._decide(key, cost, True)

    async def peek(self, key: Keys, cost: int = 1) -> RateLimitDecision:
        """See :meth:`CompositeLimiter.peek`."""
        return await self._decide(key, cost, False)

    async def acquire(
        self,
        key: Keys,
        cost: int = 1,
        timeout: float | None = None,  # noqa: ASYNC109 - waits on the limiter's clock
    ) -> RateLimitDecision:
        """See :meth:`CompositeLimiter.acquire`."""
        limit = _check_timeout(timeout)
        started = self.clock.monotonic()
        while True:
            decision = await self._decide(key, cost, True)
            if decision.allowed:
                return decision
            await self.clock.asleep(self._first._wait_or_raise(decision, started, limit))

    async def reset(self, key: Keys) -> None:
        """See :meth:`CompositeLimiter.reset`."""
        keys, _ = self._request(key, 0)
        for lim, k in zip(self._limiters, keys, strict=True):
            await lim.reset(k)  # type: ignore[attr-defined]

    async def _decide(self, key: Keys, cost: int, consume: bool) -> RateLimitDecision:
        keys, cost = self._request(key, cost)
        store = self._first._store
        if store is not None:
            return self._combine(self._memory_verdicts(store, keys, cost, consume))
        steps = self._steps(keys, cost, consume)
        try:
            call = next(steps)
            while True:
                call = steps.send(await self._first.backend.evalsha(self._first._lua, *call))
        except StopIteration as done:
            self._degraded = False
            decision: RateLimitDecision = done.value
            return decision
        except BackendUnavailable as exc:
            return self._outage(exc, keys, cost, consume)
