"""Fleet mode: one breaker state shared by many processes through Redis.

Design (documented in ``docs/breaker.md``):

* **CLOSED stays local.** Every process keeps its own sliding window; a successful call in
  ``CLOSED`` never touches Redis. Only *transitions* and half-open permits are shared.
* **One hash per breaker**, ``<prefix>:{<name>}:state``, holding the state machine snapshot of
  :mod:`dsprims.breaker.core` and a version number. A process proposes a change by running the
  pure core on its cached snapshot and submitting the result with the version it started from
  (``breaker_sync.lua``: compare-and-set, one round trip). On a conflict the script returns the
  current state, the process adopts it and re-runs the core. The state machine therefore exists
  once, in Python; Lua only makes each step atomic.
* **Push, not poll.** An applied change is published on ``<prefix>:{<name>}:events``; every
  process subscribes in the background and adopts newer versions, so when one process trips the
  breaker the others see ``OPEN`` one server-to-client hop later, without polling.
* **Server time.** Deadlines (open period, half-open wait) are integer milliseconds of the Redis
  server's ``TIME`` (or of the explicitly passed clock's ``time_ns()``). Each reply carries the
  server time, from which a process estimates its offset; the ``OPEN`` -> ``HALF_OPEN`` step is
  additionally guarded in the script (``now >= open_until``), so no process ends an open period
  early whatever its clock says.
* **Exact half-open permits fleet-wide**: a permit is a versioned increment of ``permits_out``.

Failure modes: when Redis cannot be reached within the client's timeout, the process marks the
link down for ``retry_interval`` seconds and decides locally meanwhile (its own window, its own
open periods and permits), so calls are never blocked longer than one timeout. When Redis comes
back, the shared state wins: local changes made during the outage are not replayed. Pub/sub
messages missed while the subscriber reconnects are covered by a read on every reconnect. A
process that dies holding a half-open permit leaves it taken: use ``max_half_open_wait`` to
bound that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from dsprims.backends.base import namespaced_key
from dsprims.breaker.core import BreakerSnapshot, BreakerState
from dsprims.errors import BackendError
from dsprims.timesource import Clock

__all__ = ["AsyncFleetLink", "CasReply", "CasRequest", "FleetLink", "decode", "encode"]

logger = logging.getLogger("dsprims.breaker")

_CODES = {
    BreakerState.CLOSED: 0,
    BreakerState.OPEN: 1,
    BreakerState.HALF_OPEN: 2,
    BreakerState.DISABLED: 3,
    BreakerState.FORCED_OPEN: 4,
}
_STATES = {code: state for state, code in _CODES.items()}
SCRIPT = "breaker_sync"
#: How often an asyncio breaker on a Redis Cluster reads the shared state when its client has
#: no pub/sub (redis-py before 8.0), in seconds.
_POLL_S = 0.2


@dataclass(frozen=True, slots=True)
class CasRequest:
    """A proposed change (``new``) to the shared state at version ``expected``.

    ``expected == -1`` only reads. ``not_before`` (seconds, shared time base) refuses the change
    while the server's time is earlier. ``at`` is the time ``new`` was computed at; the script
    re-anchors a new generation's times on its own clock.
    """

    expected: int
    new: BreakerSnapshot | None = None
    not_before: float = 0.0
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class CasReply:
    """The shared state after a request: whether the change was applied, and the server time."""

    applied: bool
    now: float
    version: int
    snap: BreakerSnapshot


def encode(snap: BreakerSnapshot) -> list[int]:
    """The snapshot as the script's nine integers (times in ms)."""
    return [
        _CODES[snap.state],
        snap.generation,
        round(snap.since * 1000),
        round(snap.open_until * 1000),
        snap.open_count,
        snap.permits_out,
        snap.trial_calls,
        snap.trial_failures,
        snap.trial_slow,
    ]


def decode(values: list[Any]) -> BreakerSnapshot:
    """The inverse of :func:`encode` (accepts ints, bytes or str)."""
    v = [int(x) for x in values]
    return BreakerSnapshot(
        state=_STATES.get(v[0], BreakerState.CLOSED),
        generation=v[1],
        since=v[2] / 1000,
        open_until=v[3] / 1000,
        open_count=v[4],
        permits_out=v[5],
        trial_calls=v[6],
        trial_failures=v[7],
        trial_slow=v[8],
    )


def parse_message(data: Any) -> tuple[int, BreakerSnapshot] | None:
    """A published change: ``(version, snapshot)``, or None for a malformed message."""
    if isinstance(data, bytes):
        data = data.decode("ascii", "replace")
    try:
        parts = str(data).split(",")
        if len(parts) < 10:
            return None
        return int(parts[0]), decode(parts[1:10])
    except ValueError:
        return None


Steps = Generator[CasRequest, CasReply, Any]


class _LinkBase:
    """Keys, time base and reply parsing shared by the sync and async links."""

    def __init__(self, name: str, prefix: str, clock: Clock, pinned: bool) -> None:
        self.key = namespaced_key(prefix, name, "state")
        self.channel = namespaced_key(prefix, name, "events")
        self.clock = clock
        self.mono = clock.monotonic
        self.pinned = pinned
        # Seconds to add to the local monotonic clock to estimate the server's clock, from the
        # reply with the shortest round trip seen lately (Cristian's algorithm: the shorter the
        # round trip, the tighter the midpoint brackets the server's reading).
        self.offset: float | None = None
        self._best_rtt = float("inf")
        self._offset_at = -float("inf")

    def now(self) -> float:
        """The shared time base now, in seconds (estimated between round trips)."""
        if self.pinned:
            return self.clock.time_ns() / 1e9
        if self.offset is None:
            return self.clock.time_ns() / 1e9  # before the first reply: the local wall clock
        return self.mono() + self.offset

    def args(self, req: CasRequest) -> list[int | str]:
        """ARGV for the script."""
        now = str(self.clock.time_ns() // 1_000_000) if self.pinned else ""
        fields: list[int] = encode(req.new) if req.new is not None else [0] * 9
        return [
            req.expected,
            now,
            round(req.not_before * 1000) if req.not_before > 0 else 0,
            self.channel if req.new is not None else "",
            *fields,
            "" if self.pinned or req.new is None else round(req.at * 1000),
        ]

    def reply(self, raw: Any, t0: float, t1: float) -> CasReply:
        """Parse a script reply and refresh the clock offset from it."""
        now = int(raw[1]) / 1000
        if not self.pinned:
            # The server read TIME somewhere between send and receive: assume the midpoint.
            rtt = t1 - t0
            stale = t1 - self._offset_at > 30.0
            if stale or rtt <= 2 * self._best_rtt:
                self.offset = now - (t0 + t1) / 2
                self._best_rtt = rtt if stale else min(self._best_rtt, rtt)
                self._offset_at = t1
        return CasReply(bool(int(raw[0])), now, int(raw[2]), decode(list(raw[3:12])))


class FleetLink(_LinkBase):
    """The sync link: one script call per request, and a pub/sub listener thread."""

    def __init__(self, backend: Any, name: str, prefix: str, clock: Clock, pinned: bool) -> None:
        super().__init__(name, prefix, clock, pinned)
        self.backend = backend
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run(self, req: CasRequest) -> CasReply:
        """One round trip; raises ``BackendUnavailable``/``BackendError``."""
        t0 = self.mono()
        raw = self.backend.evalsha(SCRIPT, [self.key], self.args(req))
        return self.reply(raw, t0, self.mono())

    def start(
        self, on_message: Callable[[int, BreakerSnapshot], None], resync: Callable[[], None]
    ) -> None:
        """Start the background subscriber (a daemon thread)."""
        self._thread = threading.Thread(
            target=self._listen, args=(on_message, resync), daemon=True, name=f"breaker-{self.key}"
        )
        self._thread.start()

    def _listen(
        self, on_message: Callable[[int, BreakerSnapshot], None], resync: Callable[[], None]
    ) -> None:
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self.backend.client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                resync()  # whatever was published while we were not subscribed
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.2)
                    if message is not None and message.get("type") == "message":
                        parsed = parse_message(message.get("data"))
                        if parsed is not None:
                            on_message(*parsed)
            except Exception as exc:  # the driver's errors, untranslated: just reconnect
                logger.debug("breaker subscriber %s: %s; reconnecting", self.channel, exc)
                self._stop.wait(0.2)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()

    def close(self) -> None:
        """Stop the subscriber."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)


class AsyncFleetLink(_LinkBase):
    """The asyncio link: awaited script calls and a pub/sub listener task."""

    def __init__(self, backend: Any, name: str, prefix: str, clock: Clock, pinned: bool) -> None:
        super().__init__(name, prefix, clock, pinned)
        self.backend = backend
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def run(self, req: CasRequest) -> CasReply:
        """One round trip; raises ``BackendUnavailable``/``BackendError``."""
        t0 = self.mono()
        raw = await self.backend.evalsha(SCRIPT, [self.key], self.args(req))
        return self.reply(raw, t0, self.mono())

    @property
    def started(self) -> bool:
        """Whether the subscriber task was started (or will never be)."""
        return self._task is not None or self._closed

    def ensure_started(
        self,
        on_message: Callable[[int, BreakerSnapshot], None],
        resync: Callable[[], Any],
    ) -> None:
        """Start the subscriber task on the running loop, once."""
        if self._task is not None or self._closed:
            return
        self._task = asyncio.get_running_loop().create_task(self._listen(on_message, resync))

    async def _listen(
        self,
        on_message: Callable[[int, BreakerSnapshot], None],
        resync: Callable[[], Any],
    ) -> None:
        if not hasattr(self.backend.client, "pubsub"):
            await self._poll(resync)
            return
        while not self._closed:
            pubsub = None
            try:
                pubsub = self.backend.client.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(self.channel)
                await resync()
                while not self._closed:
                    message = await pubsub.get_message(timeout=0.2)
                    if message is not None and message.get("type") == "message":
                        parsed = parse_message(message.get("data"))
                        if parsed is not None:
                            on_message(*parsed)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.debug("breaker subscriber %s: %s; reconnecting", self.channel, exc)
                await asyncio.sleep(0.2)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(pubsub.aclose())

    async def _poll(self, resync: Callable[[], Any]) -> None:
        # redis-py before 8.0 has no pub/sub on its asyncio RedisCluster: read the shared state
        # every _POLL_S seconds instead, so other processes' transitions arrive that late at
        # most (a CAS reply still carries them at once).
        while not self._closed:
            try:
                await resync()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.debug("breaker poller %s: %s", self.channel, exc)
            await asyncio.sleep(_POLL_S)

    async def aclose(self) -> None:
        """Stop the subscriber task."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def drive(steps: Steps, run: Callable[[CasRequest], CasReply]) -> Any:
    """Run a step generator to completion with a sync link (errors are thrown back in)."""
    try:
        req = next(steps)
        while True:
            try:
                reply = run(req)
            except BackendError as exc:
                req = steps.throw(exc)
            else:
                req = steps.send(reply)
    except StopIteration as stop:
        return stop.value


async def adrive(
    steps: Steps,
    run: Callable[[CasRequest], Any],
    on_abandon: Callable[[Any], Any] | None = None,
) -> Any:
    """The asyncio twin of :func:`drive`, safe against cancellation.

    The round trips run in their own task: when the caller is cancelled they still complete
    (so this process and Redis agree on what happened), ``on_abandon(result)`` may then undo
    it (e.g. hand back a permit nobody will use), and the cancellation is re-raised.
    """
    task = asyncio.ensure_future(_adrive(steps, run))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        try:
            result = await task
        except Exception:
            raise asyncio.CancelledError from None
        if on_abandon is not None:
            await on_abandon(result)
        raise


async def _adrive(steps: Steps, run: Callable[[CasRequest], Any]) -> Any:
    try:
        req = next(steps)
        while True:
            try:
                reply = await run(req)
            except BackendError as exc:
                req = steps.throw(exc)
            else:
                req = steps.send(reply)
    except StopIteration as stop:
        return stop.value
