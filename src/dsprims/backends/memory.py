"""The in-memory backend: the embedded default and the fake for property tests.

It runs a primitive's pure decision core under one lock, so every decision is atomic exactly as
a Redis script is. State for a key is kept with a deadline on the clock of the primitive that
wrote it; once that clock passes the deadline the key reads as absent and a sweep (amortised over
writes, O(1) per write) frees it, so memory stays bounded by the live keys. Deadlines are read on
the writer's own clock, so a test that pins time with :class:`~dsprims.ManualClock` never loses
state to real time passing.

Thread-safe; never blocks on I/O. Not shared between processes: use Redis or ZooKeeper for that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from dsprims._mutex import ReentrantMutex
from dsprims.backends.base import BackendKind
from dsprims.timesource import SYSTEM_CLOCK, Clock

__all__ = ["AsyncMemoryBackend", "MemoryBackend"]

S = TypeVar("S")
R = TypeVar("R")

_NO_DEADLINE = float("inf")
#: The deadline given to an entry list once it leaves the table (see ``entry_table``).
_DETACHED = float("-inf")


def _detach(entry: list[Any]) -> None:
    # A list that left the table may still be held by a hot path (entry_table): make it read
    # as expired for ever, and let go of its state so holding it costs next to nothing.
    entry[0] = None
    entry[1] = _DETACHED


class MemoryBackend:
    """Thread-safe in-process state store with per-key expiry.

    Example:
        >>> backend = MemoryBackend()
        >>> backend.transact("k", lambda old: ((old or 0) + 1, (old or 0) + 1), ttl=10)
        1
    """

    kind: ClassVar[BackendKind] = "memory"

    def __init__(self) -> None:
        #: Guards ``_entries``. Re-entrant so a primitive may nest a transact inside its own
        #: critical section (e.g. a lock queue that also bumps a fencing counter); hot paths
        #: may take its token directly (see :class:`~dsprims._mutex.ReentrantMutex`).
        self.lock = ReentrantMutex()
        # key -> [state, deadline, clock]; a list so a refresh mutates in place.
        self._entries: dict[str, list[Any]] = {}
        self._writes_since_sweep = 0

    def transact(
        self,
        key: str,
        fn: Callable[[S | None], tuple[R, S | None]],
        *,
        ttl: float | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> R:
        """Atomically read the state of ``key``, apply ``fn``, and store what it returns.

        Args:
            key: the namespaced key.
            fn: ``fn(state or None) -> (result, new_state)``; a ``None`` new state deletes the key.
                It runs under the backend lock: keep it pure and short.
            ttl: seconds (on ``clock``) after which an untouched key expires; ``None`` keeps it.
            clock: the clock ``ttl`` is measured on, normally the primitive's own.

        Returns:
            Whatever ``fn`` returned as its result.
        """
        with self.lock:
            entry = self._entries.get(key)
            state = None
            if entry is not None:
                if entry[2].monotonic() >= entry[1]:
                    del self._entries[key]
                    _detach(entry)
                    entry = None
                else:
                    state = entry[0]
            result, new_state = fn(state)
            if new_state is None:
                if entry is not None:
                    self._entries.pop(key, None)
                    _detach(entry)
            else:
                deadline = _NO_DEADLINE if ttl is None else clock.monotonic() + ttl
                self._entries[key] = [new_state, deadline, clock]
                if entry is not None:
                    _detach(entry)
                self._writes_since_sweep += 1
                # Sweeping after max(1024, n/2) writes costs O(1) amortised per write and
                # keeps at most that many dead entries around.
                if self._writes_since_sweep > max(1024, len(self._entries) >> 1):
                    self._sweep()
            return result

    def entry_table(self) -> dict[str, list[Any]]:
        """The entry table itself, for hot paths that update their own keys in place.

        Layout: ``key -> [state, deadline, clock]``, the deadline read on ``clock.monotonic()``.
        A caller holding :attr:`lock` (through ``with``, or its raw token) may read an entry
        and, when its deadline has not passed, replace ``entry[0]`` (the state) and
        ``entry[1]`` (the deadline) in place. Creating and deleting keys must go through
        :meth:`transact` and :meth:`delete`, which keep the sweep accounting. The rate limiters
        use this: the generic :meth:`transact` call would otherwise cost more than the decision
        itself.

        Entry lists are never reused: a write makes a new list, and a list that leaves the
        table (replaced, deleted, expired or swept) gets the deadline ``-inf`` and the state
        ``None`` at that moment, under the lock. So a caller may keep an entry list across calls
        and, holding the lock, know it is still the key's live entry exactly when
        ``clock.monotonic() < entry[1]`` on the entry's own clock ``entry[2]`` (which never
        changes); a list it keeps after that holds no state.
        """
        return self._entries

    def get(self, key: str) -> Any:
        """The live state of ``key``, or ``None``."""
        with self.lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[2].monotonic() >= entry[1]:
                del self._entries[key]
                _detach(entry)
                return None
            return entry[0]

    def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it was live."""
        with self.lock:
            entry = self._entries.pop(key, None)
            if entry is None:
                return False
            live: bool = entry[2].monotonic() < entry[1]
            _detach(entry)
            return live

    def keys(self) -> list[str]:
        """The live keys (a snapshot), for tests and diagnostics."""
        with self.lock:
            self._sweep()
            return list(self._entries)

    def __len__(self) -> int:
        with self.lock:
            self._sweep()
            return len(self._entries)

    def _sweep(self) -> None:
        # Called with the lock held. Clocks are asked once each, not once per entry.
        now_by_clock: dict[int, float] = {}
        expired = []
        for key, (_state, deadline, clock) in self._entries.items():
            if deadline == _NO_DEADLINE:
                continue
            now = now_by_clock.get(id(clock))
            if now is None:
                now = now_by_clock[id(clock)] = clock.monotonic()
            if now >= deadline:
                expired.append(key)
        for key in expired:
            _detach(self._entries.pop(key))
        self._writes_since_sweep = 0

    def close(self) -> None:
        """Nothing to release; present so every backend can be closed the same way."""

    def __repr__(self) -> str:
        return f"MemoryBackend(keys={len(self._entries)})"


class AsyncMemoryBackend:
    """The in-memory backend for asyncio primitives.

    Decisions never wait on I/O, so its coroutines run the same :class:`MemoryBackend` code
    without yielding. Pass ``store`` to share state with sync primitives in the same process.
    """

    kind: ClassVar[BackendKind] = "memory"

    def __init__(self, store: MemoryBackend | None = None) -> None:
        self.store = store if store is not None else MemoryBackend()

    async def transact(
        self,
        key: str,
        fn: Callable[[S | None], tuple[R, S | None]],
        *,
        ttl: float | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> R:
        """See :meth:`MemoryBackend.transact`."""
        return self.store.transact(key, fn, ttl=ttl, clock=clock)

    async def get(self, key: str) -> Any:
        """See :meth:`MemoryBackend.get`."""
        return self.store.get(key)

    async def delete(self, key: str) -> bool:
        """See :meth:`MemoryBackend.delete`."""
        return self.store.delete(key)

    def __repr__(self) -> str:
        return f"AsyncMemoryBackend({self.store!r})"
