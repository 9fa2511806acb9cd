"""Several limits checked as one: :class:`CompositeLimiter` and :class:`AsyncCompositeLimiter`.

A composite admits a request only when every limiter admits it, and a denial consumes from none
(e.g. 10/s per user *and* 1000/s for the whole service). The check is atomic:

* memory: every limiter's core runs under the backend lock, first as a peek, then (only if all
  admit) as a consume, all at one instant;
* Redis: the same two phases run inside ONE ``EVALSHA`` of ``ratelimit_decide.lua``.

Redis Cluster: one script can only touch keys of one hash slot. The key of a limit is its hash
tag, so a composite whose limiters all limit the same key (``try_acquire("user-42")``) always
works; a composite over different keys (``try_acquire(["user-42", "global"])``) works on a
standalone server but raises :class:`~dsprims.ConfigurationError` on a Cluster when the keys fall
in different slots. dsprims refuses rather than fall back to check-then-consume, which could
over-admit under concurrency or need compensating writes that others observe.

The decision's ``remaining`` is the smallest of the limiters', ``retry_after`` and
``reset_after`` the largest, and ``limit`` that of the limiter with the least remaining.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dsprims.backends.memory import MemoryBackend
from dsprims.errors import BackendUnavailable, ConfigurationError, RateLimitExceeded
from dsprims.ratelimit.core import check_cost
from dsprims.ratelimit.decision import RateLimitDecision
from dsprims.ratelimit.limiters import (
    SCRIPT,
    OutagePolicy,
    Verdict4,
    _AsyncLimiter,
    _check_key,
    _check_timeout,
    _LimiterBase,
    _now_us,
    _SyncLimiter,
)

__all__ = ["AsyncCompositeLimiter", "CompositeLimiter"]

Keys = str | Sequence[str]


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
        self._limiters = items
        self._first = first
        self.clock = first.clock
        self.on_outage: OutagePolicy = first.on_outage if on_outage is None else on_outage
        if self.on_outage not in ("raise", "allow", "local"):
            raise ConfigurationError(f"on_outage must be raise, allow or local: {on_outage!r}")
        self._fallback = MemoryBackend() if self.on_outage == "local" else None
        self._cluster = bool(getattr(first.backend, "is_cluster", False))

    @property
    def limiters(self) -> tuple[Any, ...]:
        """The limiters, in order."""
        return self._limiters

    def _request(self, key: object, cost: object) -> tuple[list[str], int]:
        if isinstance(key, str):
            keys = [_check_key(key)] * len(self._limiters)
        elif isinstance(key, Sequence) and not isinstance(key, bytes):
            keys = [_check_key(k) for k in key]
            if len(keys) != len(self._limiters):
                raise ConfigurationError(
                    f"key must be one str or one per limiter ({len(self._limiters)}), "
                    f"got {len(keys)}"
                )
        else:
            raise TypeError(f"key must be a str or a sequence of str, got {type(key).__name__}")
        for limiter in self._limiters:
            check_cost(cost, limiter.limit)
        return keys, cost  # type: ignore[return-value]

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

    def _script(self, keys: list[str], cost: int, consume: bool) -> tuple[list[str], list[Any]]:
        rkeys: list[str] = []
        args: list[Any] = [self._first._time_arg(), 1 if consume else 0]
        args += [self._first._grace_ms, len(self._limiters)]
        for lim, k in zip(self._limiters, keys, strict=True):
            rkeys += lim._redis_keys(k)
            args += [*lim._spec, cost]
        if self._cluster and len(set(keys)) > 1:
            from redis.crc import key_slot

            if len({key_slot(k.encode("utf-8", "surrogatepass")) for k in rkeys}) > 1:
                raise ConfigurationError(
                    "on Redis Cluster the keys of one composite decision must share a hash "
                    f"slot; {keys!r} do not (limit the same key with every limiter, or use a "
                    "standalone Redis)"
                )
        return rkeys, args

    def _combine(self, verdicts: Sequence[Sequence[Any]]) -> RateLimitDecision:
        allowed = all(int(v[0]) for v in verdicts)
        best = 0
        for i, v in enumerate(verdicts):
            if int(v[1]) < int(verdicts[best][1]):
                best = i
        remaining = int(verdicts[best][1])
        reset = max(int(v[3]) for v in verdicts) / 1e6
        limit = self._limiters[best].limit
        if allowed:
            return RateLimitDecision(True, remaining, 0.0, reset, limit)
        retry = max(int(v[2]) for v in verdicts if not int(v[0]))
        return RateLimitDecision(False, remaining, (retry + 1) / 1e6, reset, limit)

    def _reply(self, reply: Sequence[Any]) -> RateLimitDecision:
        return self._combine([reply[i : i + 4] for i in range(0, len(reply), 4)])

    def _outage(
        self, exc: BackendUnavailable, keys: list[str], cost: int, consume: bool
    ) -> RateLimitDecision:
        if self._fallback is not None:
            verdicts = self._memory_verdicts(self._fallback, keys, cost, consume)
            return self._combine(verdicts)._replace(degraded=True)
        if self.on_outage == "allow":
            limit = min(lim.limit for lim in self._limiters)
            remaining = limit - cost if consume else limit
            return RateLimitDecision(True, remaining, 0.0, 0.0, limit, True)
        raise exc

    def _wait(self, decision: RateLimitDecision, started: float, timeout: float | None) -> float:
        if (
            timeout is not None
            and self.clock.monotonic() - started + decision.retry_after > timeout
        ):
            raise RateLimitExceeded(
                f"rate limit: admission needs {decision.retry_after:.6f}s more, "
                f"beyond the timeout of {timeout}s",
                decision,
            )
        return decision.retry_after


class CompositeLimiter(_CompositeBase):
    """Admit only when every limiter admits; a denial consumes from none.

    Args:
        limiters: sync limiters (:class:`TokenBucket`, :class:`SlidingWindowLog`,
            :class:`SlidingWindowCounter`) sharing one backend and one clock.
        on_outage: the outage policy; default that of the first limiter.

    Example:
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
            self.clock.sleep(self._wait(decision, started, limit))

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
        rkeys, args = self._script(keys, cost, consume)
        try:
            reply = self._first.backend.evalsha(SCRIPT, rkeys, args)
        except BackendUnavailable as exc:
            return self._outage(exc, keys, cost, consume)
        return self._reply(reply)


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
            await self.clock.asleep(self._wait(decision, started, limit))

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
        rkeys, args = self._script(keys, cost, consume)
        try:
            reply = await self._first.backend.evalsha(SCRIPT, rkeys, args)
        except BackendUnavailable as exc:
            return self._outage(exc, keys, cost, consume)
        return self._reply(reply)
