"""The breaker's bookkeeping shell, shared by the sync and async breakers.

It owns the state-machine snapshot and the sliding window of one breaker and runs the pure core
(:mod:`dsprims.breaker.core`) under one short lock. Nothing here waits or calls user code under
the lock except a custom trip predicate (documented as "must be fast and pure"). The user's call
runs with no lock held: in ``CLOSED`` admission is a single read of ``closed_gen`` (the
generation while closed, -1 otherwise), so admitted calls run fully in parallel; their outcomes
are then recorded under the lock and discarded when the generation has moved on meanwhile.

Events are queued under the lock (so their order is the order of the state changes) and
delivered after it is released, by whichever thread gets the dispatch lock first; a thread that
finds dispatching in progress leaves its events to the dispatcher, which re-checks the queue
after letting go, so no event is stranded and callbacks never run concurrently.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import random
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from dsprims._mutex import TokenMutex
from dsprims.breaker.core import (
    FAILURE,
    NO_TRANSITIONS,
    SLOW,
    SUCCESS,
    Admission,
    BreakerParams,
    BreakerSnapshot,
    BreakerState,
    CountWindow,
    TimeWindow,
    Transition,
    TripPredicate,
    advance,
    make_window,
    manual_transition,
    on_acquire,
    release_trial,
    settle_trial,
    trip,
)
from dsprims.breaker.events import BreakerMetrics, CallEvent, CallOutcome, StateChangeEvent
from dsprims.breaker.fleet import AsyncFleetLink, CasRequest, FleetLink, Steps, drive
from dsprims.errors import BackendError, CircuitOpenError
from dsprims.timesource import Clock

__all__ = ["IGNORED", "ExceptionFilter", "ResultPredicate", "_Engine"]

logger = logging.getLogger("dsprims.breaker")

#: Outcome code for "not recorded".
IGNORED = -1

#: Never failures, whatever ``record`` says: the caller is being interrupted, not the service
#: failing (and a cancelled trial must hand its permit back).
_NEVER_FAILURES = (KeyboardInterrupt, SystemExit, asyncio.CancelledError, GeneratorExit)

ExceptionFilter = tuple[type[BaseException], ...] | Callable[[BaseException], bool]
ResultPredicate = Callable[[Any], bool]
Listener = Callable[[Any], object]
Trs = tuple[Transition, ...]
Compute = Callable[[BreakerSnapshot, float], tuple[Any, BreakerSnapshot, Trs]]

#: Compare-and-set attempts before a contended fleet decision gives up (rejects or discards).
_MAX_TRIES = 16


def _matches(filt: ExceptionFilter, exc: BaseException) -> bool:
    if isinstance(filt, tuple):
        return isinstance(exc, filt)
    return bool(filt(exc))


class _Engine:
    """One breaker's state, window, counters and event queue (internal)."""

    # Slots: every hot-path attribute read is a fixed-offset load (LOAD_ATTR_SLOT) instead of
    # a hinted dict lookup; the engine has more attributes than CPython shares keys for.
    __slots__ = (
        "_full",
        "_give",
        "_quiet_possible",
        "_take",
        "_tick_base",
        "_tick_reads",
        "_waiters",
        "alink",
        "call_listeners",
        "clock",
        "closed_gen",
        "dispatching",
        "down_until",
        "ignore_filter",
        "last_sync",
        "link",
        "lock",
        "mono",
        "name",
        "needs_now",
        "now",
        "params",
        "pending",
        "plain",
        "quiet",
        "record_filter",
        "record_result",
        "reject_until",
        "rejected",
        "rejection_ticks",
        "retry_interval",
        "rng",
        "slow_s",
        "snap",
        "state_listeners",
        "success",
        "timed",
        "ver",
        "window",
    )

    def __init__(
        self,
        name: str,
        params: BreakerParams,
        clock: Clock,
        *,
        record: ExceptionFilter,
        ignore: ExceptionFilter,
        record_result: ResultPredicate | None,
        trip_predicate: TripPredicate | None,
        rng: random.Random | None,
    ) -> None:
        self.name = name
        self.params = params
        self.clock = clock
        self.mono: Callable[[], float] = clock.monotonic
        self.record_filter = record
        self.ignore_filter = ignore
        self.record_result = record_result
        self.lock = TokenMutex()
        self.window = make_window(params, trip_predicate)
        self.needs_now = params.window_type == "time"
        self.timed = params.slow_call_duration is not None
        self.slow_s = params.slow_call_duration if params.slow_call_duration is not None else 0.0
        self.rng = rng if rng is not None else random.Random()
        #: The state machine's time base: the clock's monotonic time locally; the shared (server or
        #: pinned) time in fleet mode. Windows and call durations always use ``mono``.
        self.now: Callable[[], float] = self.mono
        self.snap = BreakerSnapshot(since=self.mono())
        # Fleet mode (see dsprims.breaker.fleet): the links, the shared version of ``snap``, and
        # until when the link counts as down after an outage.
        self.link: FleetLink | None = None
        self.alink: AsyncFleetLink | None = None
        self.ver = 0
        self.down_until = -math.inf
        self.retry_interval = 1.0
        self.last_sync = -math.inf
        #: Generation while CLOSED, else -1: the lock-free admission check of the hot path.
        self.closed_gen = 0
        #: True when recording a fast success would change nothing: CLOSED, a full count
        #: window of plain successes, no slow-call timing, no result predicate, no call
        #: listeners. Callers may then skip ``finish`` without taking the lock (a success pushed
        #: into a ring of successes leaves it identical, so skipping it is the same as recording
        #: it at the moment ``quiet`` was read).
        self.quiet = False
        self._quiet_possible = (
            params.window_type == "count"
            and trip_predicate is None
            and record_result is None
            and not self.timed
        )
        self._full = int(params.window_size)
        #: Outcomes need nothing but the window: :meth:`success` may stand in for ``finish``.
        self.plain = not self.timed and record_result is None
        # Bound once: the hot paths take and give the mutex's token without attribute lookups
        # and without the ``with`` protocol (see dsprims._mutex.TokenMutex).
        self._take: Callable[[], None] = self.lock.pop
        self._give: Callable[[None], None] = self.lock.append
        self._waiters = self.lock.waiters
        #: ``success(generation)``: :meth:`finish` for the common case only, an untimed
        #: success outside half-open. The shells call it when :attr:`plain` holds (no timing,
        #: no result predicate, no call listeners): one lock, one window update, one
        #: comparison. Specialised per window type (without a trip predicate).
        self.success: Callable[[int], Steps | None] = self._success_any
        if trip_predicate is None:
            if params.window_type == "count":
                self.success = self._success_count
            else:
                self.success = self._success_time
        #: While OPEN (or FORCED_OPEN): the time before which calls are rejected without the
        #: core; -inf otherwise, and always -inf once a call listener is registered (its
        #: REJECTED events need the slow path), so the fast path reads one attribute.
        self.reject_until = -math.inf
        #: Rejections counted under the lock (slow path).
        self.rejected = 0
        #: The rejection fast path counts with one C call, ``next(rejection_ticks)``, instead
        #: of the lock (an atomic increment in CPython). Reading the count takes a tick too;
        #: ``_tick_reads`` remembers how many, ``_tick_base`` where the last reset left it.
        self.rejection_ticks = itertools.count()
        self._tick_reads = 0
        self._tick_base = 0
        self.pending: deque[Any] = deque()
        self.dispatching = threading.Lock()
        self.state_listeners: list[Listener] = []
        self.call_listeners: list[Listener] = []

    # -- helpers -------------------------------------------------------------------------

    def draw(self) -> float:
        """A jitter draw, only consumed when jitter is configured."""
        return self.rng.random() if self.params.open_duration_jitter else 0.5

    def install(self, new: BreakerSnapshot, transitions: tuple[Transition, ...]) -> None:
        """Adopt ``new`` (lock held) and queue the transitions' events."""
        self.snap = new
        if transitions:
            for t in transitions:
                if t.to_state is BreakerState.CLOSED:
                    self.window.reset()
                self.pending.append(
                    StateChangeEvent(
                        self.name,
                        t.from_state,
                        t.to_state,
                        t.generation,
                        t.at,
                        t.reason,
                        t.open_until,
                    )
                )
            self.closed_gen = new.generation if new.state is BreakerState.CLOSED else -1
            self.quiet = False
            if self.call_listeners:
                self.reject_until = -math.inf
            elif new.state is BreakerState.OPEN:
                self.reject_until = new.open_until
            elif new.state is BreakerState.FORCED_OPEN:
                self.reject_until = math.inf
            else:
                self.reject_until = -math.inf

    def count_rejection(self) -> None:
        """Count one rejection without the lock."""
        next(self.rejection_ticks)

    def _fast_rejections(self) -> int:
        # Lock held. The tick we take to read the counter is not a rejection.
        ticks = next(self.rejection_ticks) - self._tick_reads
        self._tick_reads += 1
        return ticks

    def rejections_total(self) -> int:
        """Rejections since creation or the last reset."""
        with self.lock:
            return self.rejected + self._fast_rejections() - self._tick_base

    def _reset_rejections(self) -> None:
        # Lock held.
        self._tick_base = self._fast_rejections()
        self.rejected = 0

    def add_call_listener(self, listener: Listener) -> None:
        """Register a call listener (every outcome must now go through ``finish``)."""
        with self.lock:
            self._quiet_possible = False
            self.quiet = False
            self.plain = False
            self.reject_until = -math.inf
            self.call_listeners.append(listener)

    def classify(self, exc: BaseException) -> int:
        """FAILURE, SUCCESS or IGNORED for an exception the protected call raised."""
        if isinstance(exc, _NEVER_FAILURES):
            return IGNORED
        if _matches(self.ignore_filter, exc):
            return IGNORED
        if _matches(self.record_filter, exc):
            return FAILURE
        return SUCCESS

    def result_code(self, result: Any) -> int:
        """FAILURE when the result predicate says so, else SUCCESS."""
        if self.record_result is not None and self.record_result(result):
            return FAILURE
        return SUCCESS

    # -- admission -------------------------------------------------------------------------

    def acquire(self) -> Admission:
        """The slow path of admission (any state); raises ``CircuitOpenError`` on rejection."""
        until = self.reject_until
        if until != -math.inf and not self.call_listeners:
            now = self.now()
            if now < until:
                # Rejection without the core: the open period has not ended, nothing changes.
                self.count_rejection()
                raise CircuitOpenError(self.name, until - now if until != math.inf else 0.0)
        if self.link is not None:
            return self.admit(drive(self.acquire_steps(), self.link.run))
        with self.lock:
            adm, new, transitions = on_acquire(self.snap, self.now(), self.params, self.draw())
            if new is not self.snap:
                self.install(new, transitions)
        return self.admit(adm)

    def admit(self, adm: Admission | None) -> Admission:
        """Count and raise a rejection (``None``: the fleet was too contended to decide)."""
        if adm is None:
            adm = Admission(False, self.snap.generation)
        if not adm.permitted:
            with self.lock:
                self.rejected += 1
                if self.call_listeners:
                    self.pending.append(
                        CallEvent(self.name, CallOutcome.REJECTED, adm.generation, False)
                    )
        if self.pending:
            self.drain()
        if not adm.permitted:
            raise CircuitOpenError(self.name, adm.retry_after)
        return adm

    def acquire_steps(self) -> Steps:
        """Fleet admission: refresh a stale half-open view, then run ``on_acquire`` by CAS."""
        snap = self.snap
        if (
            snap.state is BreakerState.HALF_OPEN
            and self.mono() - self.last_sync > self.retry_interval
        ):
            yield from self.read_steps()
        params = self.params
        adm: Admission | None = yield from self.shared_steps(
            lambda snap, now: on_acquire(snap, now, params, self.draw()), None
        )
        return adm

    # -- outcomes -------------------------------------------------------------------------

    def finish(
        self,
        generation: int,
        trial: bool,
        code: int,
        duration: float,
        exc: BaseException | None = None,
    ) -> Steps | None:
        """Record the outcome of an admitted call (``code`` IGNORED, SUCCESS or FAILURE).

        Returns the fleet round trips still to run when the breaker is on an async link (the
        async shell awaits them); ``None`` otherwise.
        """
        if code > IGNORED and self.timed and duration >= self.slow_s:
            code |= SLOW
        if trial and (self.link is not None or self.alink is not None):
            return self._follow(self.trial_steps(generation, code, duration, exc))
        counted = False
        new: BreakerSnapshot | None = None
        transitions: tuple[Transition, ...] = ()
        reason: str | None = None
        with self.lock:
            if trial:
                if code == IGNORED:
                    self.snap = release_trial(self.snap, generation)
                else:
                    counted, new, transitions = settle_trial(
                        self.snap, self.now(), generation, code, self.params, self.draw()
                    )
            elif code > IGNORED and generation == self.closed_gen:
                counted = True
                w = self.window
                reason = w.record(code, self.mono() if self.needs_now else 0.0)
                if self._quiet_possible:
                    self.quiet = w.calls == self._full and not w.failures and not w.slow
            if self.call_listeners:
                # Queued before the transition: the tripping call's event comes first.
                self.pending.append(self._call_event(generation, code, counted, duration, exc))
            if new is not None:
                self.install(new, transitions)
            follow = None if reason is None else self._trip_locked(generation, reason)
        return self._finish(follow)

    def _success_any(self, generation: int) -> Steps | None:
        # ``success`` for any window (a trip predicate switches the specialised ones off).
        take, give = self._take, self._give
        try:
            take()
        except IndexError:  # another thread holds the token
            self.lock.wait()
        except BaseException:  # e.g. KeyboardInterrupt as take() returned: give it back
            self.lock.give_back()
            raise
        try:
            if generation != self.closed_gen:
                return None
            w = self.window
            reason = w.record(SUCCESS, self.mono() if self.needs_now else 0.0)
            if self._quiet_possible:
                self.quiet = w.calls == self._full and not w.failures and not w.slow
            if reason is None:
                return None
            follow = self._trip_locked(generation, reason)
        finally:
            give(None)
            if self._waiters:
                self.lock.wake()
        return self._finish(follow)

    def _success_count(self, generation: int) -> Steps | None:
        # ``success`` for a count window without a trip predicate.
        take, give = self._take, self._give
        try:
            take()
        except IndexError:  # another thread holds the token
            self.lock.wait()
        except BaseException:  # e.g. KeyboardInterrupt as take() returned: give it back
            self.lock.give_back()
            raise
        try:
            if generation != self.closed_gen:
                return None
            w: CountWindow = self.window  # type: ignore[assignment]
            i = w._i
            if not w._ring[i]:
                # CountWindow.record's no-change path, inlined (a success replacing a success
                # moves no total; the property tests compare breakers with and without it).
                i += 1
                w._i = 0 if i == w._size else i
                w.consecutive = 0
                return None
            reason = w.record(SUCCESS, 0.0)
            if self._quiet_possible:
                self.quiet = w.calls == self._full and not w.failures and not w.slow
            if reason is None:
                return None
            follow = self._trip_locked(generation, reason)
        finally:
            give(None)
            if self._waiters:
                self.lock.wake()
        return self._finish(follow)

    def _success_time(self, generation: int) -> Steps | None:
        # ``success`` for a time window without a trip predicate.
        take, give = self._take, self._give
        try:
            take()
        except IndexError:  # another thread holds the token
            self.lock.wait()
        except BaseException:  # e.g. KeyboardInterrupt as take() returned: give it back
            self.lock.give_back()
            raise
        try:
            if generation != self.closed_gen:
                return None
            w: TimeWindow = self.window  # type: ignore[assignment]
            mono = self.mono  # a slot read, then a plain call (no generic method lookup)
            now = mono()
            if now < w.quiet_until:
                # TimeWindow.record's first branch, inlined: the head slice, nothing expired,
                # the last verdict standing, so a success only lowers the rates. One clock
                # read and one comparison (the differential property tests pin it to record).
                w._b_calls[w._hb] += 1
                w.calls += 1
                w.consecutive = 0
                return None
            reason = w.record(SUCCESS, now)
            if reason is None:
                return None
            follow = self._trip_locked(generation, reason)
        finally:
            give(None)
            if self._waiters:
                self.lock.wake()
        return self._finish(follow)

    def _finish(self, follow: Steps | None) -> Steps | None:
        # Outside the lock: deliver the queued events in order, then run (or hand back) the
        # fleet round trips a trip needs.
        if self.pending:
            self.drain()
        return None if follow is None else self._follow(follow)

    def _trip_locked(self, generation: int, reason: str) -> Steps | None:
        # Lock held. Trip locally, or return the fleet round trips that trip the shared state.
        if self.link is None and self.alink is None:
            new, transitions = trip(self.snap, self.now(), self.params, reason, self.draw())
            self.install(new, transitions)
            return None
        return self.trip_steps(generation, reason)

    def _follow(self, steps: Steps) -> Steps | None:
        # A sync link runs the round trips right here; an async shell gets them to await.
        if self.link is not None:
            drive(steps, self.link.run)
            return None
        return steps

    def trial_steps(
        self, generation: int, code: int, duration: float, exc: BaseException | None
    ) -> Steps:
        """Fleet: settle (or give back) a half-open permit by CAS."""
        params = self.params
        counted = False
        if code == IGNORED:
            yield from self.shared_steps(
                lambda snap, now: (False, release_trial(snap, generation), NO_TRANSITIONS), False
            )
        else:
            counted = yield from self.shared_steps(
                lambda snap, now: settle_trial(snap, now, generation, code, params, self.draw()),
                False,
            )
        if self.call_listeners:
            with self.lock:
                self.pending.append(self._call_event(generation, code, counted, duration, exc))
            self.drain()

    def trip_steps(self, generation: int, reason: str) -> Steps:
        """Fleet: the local window crossed a threshold; trip the shared state by CAS."""
        params = self.params

        def compute(snap: BreakerSnapshot, now: float) -> tuple[None, BreakerSnapshot, Trs]:
            if snap.generation != generation:
                return None, snap, NO_TRANSITIONS  # the fleet moved on; our window is stale
            return None, *trip(snap, now, params, reason, self.draw())

        yield from self.shared_steps(compute, None)

    def _call_event(
        self, generation: int, code: int, counted: bool, duration: float, exc: BaseException | None
    ) -> CallEvent:
        if code == IGNORED:
            outcome = CallOutcome.IGNORED
        elif code & FAILURE:
            outcome = CallOutcome.FAILURE
        else:
            outcome = CallOutcome.SUCCESS
        return CallEvent(
            self.name,
            outcome,
            generation,
            counted,
            bool(code > IGNORED and code & SLOW),
            duration if self.timed else None,
            exc,
        )

    # -- manual control and inspection -----------------------------------------------------

    def transition(self, target: BreakerState, *, reset: bool, reason: str) -> Steps | None:
        """Move to ``target`` now (manual control); fleet round trips as in :meth:`finish`."""
        if self.link is not None or self.alink is not None:
            if reset:
                with self.lock:
                    self.window.reset()
                    self.quiet = False
                    self._reset_rejections()
            params = self.params
            return self._follow(
                self.shared_steps(
                    lambda snap, now: (
                        None,
                        *manual_transition(
                            snap, now, target, params, self.draw(), reset=reset, reason=reason
                        ),
                    ),
                    None,
                )
            )
        with self.lock:
            new, transitions = manual_transition(
                self.snap,
                self.now(),
                target,
                self.params,
                self.draw(),
                reset=reset,
                reason=reason,
            )
            self.install(new, transitions)
            if reset:
                self.window.reset()
                self.quiet = False
                self._reset_rejections()
        self.drain()
        return None

    def state(self) -> BreakerState:
        """The current state, after any transition that time alone causes."""
        snap = self.snap
        if self.link is not None or self.alink is not None:
            # Fleet: what time alone would do, without a round trip (the next call commits it).
            return advance(snap, self.now(), self.params, 0.5)[0].state
        if snap.state is BreakerState.OPEN or snap.state is BreakerState.HALF_OPEN:
            with self.lock:
                new, transitions = advance(self.snap, self.now(), self.params, self.draw())
                if transitions:
                    self.install(new, transitions)
                snap = self.snap
            if self.pending:
                self.drain()
        return snap.state

    def metrics(self) -> BreakerMetrics:
        """A consistent snapshot of the statistics."""
        self.state()
        with self.lock:
            now = self.now()
            snap = self.snap
            if self.link is not None or self.alink is not None:
                # As ``state`` reports it: what time alone has done since the last round trip.
                snap = advance(snap, now, self.params, 0.5)[0]
            c = self.window.counts(self.mono())
            rejected = self.rejected + self._fast_rejections() - self._tick_base
        enough = c.calls >= self.params.effective_minimum_calls and c.calls > 0
        return BreakerMetrics(
            name=self.name,
            state=snap.state,
            generation=snap.generation,
            calls=c.calls,
            failed_calls=c.failures,
            slow_calls=c.slow,
            slow_failed_calls=c.slow_failures,
            consecutive_failures=c.consecutive_failures,
            failure_rate=c.failure_rate if enough else None,
            slow_call_rate=c.slow_call_rate if enough else None,
            not_permitted_calls=rejected,
            half_open_permits_in_use=snap.permits_out,
            half_open_calls_done=snap.trial_calls,
            retry_after=max(snap.open_until - now, 0.0) if snap.state is BreakerState.OPEN else 0.0,
            open_count=snap.open_count,
        )

    # -- fleet mode ----------------------------------------------------------------------------

    def shared_steps(self, compute: Compute, fallback: Any) -> Steps:
        """Run ``compute(snapshot, now) -> (result, new, transitions)`` on the shared state.

        The core runs on the cached snapshot; a change is proposed by compare-and-set on the
        version it was computed from, and recomputed on the fresher state a conflict returns.
        A decision that changes nothing needs no round trip. While the link is down the change
        is applied locally. Returns ``fallback`` if the fleet stays too contended.
        """
        for _ in range(_MAX_TRIES):
            with self.lock:
                snap, ver = self.snap, self.ver
                now = self.now()
                result, new, transitions = compute(snap, now)
                local = new is snap or self.mono() < self.down_until
                if local and new is not snap:
                    self.install(new, transitions)
            if local:
                if self.pending:
                    self.drain()
                return result
            try:
                reply = yield CasRequest(ver, new, self._guard(snap, now), now)
            except BackendError as exc:
                self._link_down(exc)
                with self.lock:
                    applied = self.snap is snap
                    if applied:
                        self.install(new, transitions)  # decide alone until the link is back
                if self.pending:
                    self.drain()
                if applied:
                    return result
                continue
            with self.lock:
                self.last_sync = self.mono()
                if reply.applied:
                    self.ver = reply.version
                    self.install(reply.snap, transitions)
                else:
                    self._adopt(reply.version, reply.snap)
            if self.pending:
                self.drain()
            if reply.applied:
                return result
            if reply.version == ver:
                # Nothing changed on the server: the time guard refused (our estimate of the
                # server's clock ran ahead). Decide on the server's own time, without retrying.
                with self.lock:
                    result, new, _ = compute(self.snap, reply.now)
                return result if new is self.snap else fallback
        return fallback

    def _guard(self, snap: BreakerSnapshot, now: float) -> float:
        # A transition that only time causes must not happen before the server's time says so.
        if not advance(snap, now, self.params, 0.5)[1]:
            return 0.0
        if snap.state is BreakerState.OPEN:
            return snap.open_until
        wait = self.params.max_half_open_wait
        return snap.since + (wait if wait is not None else 0.0)

    def read_steps(self) -> Steps:
        """Fetch the shared state and adopt it (errors mark the link down)."""
        try:
            reply = yield CasRequest(-1)
        except BackendError as exc:
            self._link_down(exc)
            return None
        with self.lock:
            self.last_sync = self.mono()
            self._adopt(reply.version, reply.snap)
        if self.pending:
            self.drain()
        return None

    def on_message(self, version: int, snap: BreakerSnapshot) -> None:
        """A change another process (or this one) published."""
        with self.lock:
            self.last_sync = self.mono()
            self._adopt(version, snap)
        if self.pending:
            self.drain()

    def _adopt(self, version: int, snap: BreakerSnapshot) -> None:
        # Lock held. Versions only move forward; a generation change is reported as a transition
        # caused by the fleet (and resets the local window when the fleet closed).
        if version < self.ver or (version == self.ver and snap == self.snap):
            return
        old = self.snap
        self.ver = version
        if snap.generation != old.generation or snap.state is not old.state:
            transition = Transition(
                old.state, snap.state, snap.generation, snap.since, "fleet", snap.open_until
            )
            self.install(snap, (transition,))
        else:
            self.snap = snap

    def _link_down(self, exc: BaseException) -> None:
        if self.mono() >= self.down_until:
            logger.warning(
                "circuit breaker %r: shared state unreachable (%s); deciding locally for %.1fs",
                self.name,
                exc,
                self.retry_interval,
            )
        self.down_until = self.mono() + self.retry_interval

    # -- events ------------------------------------------------------------------------------

    def drain(self) -> None:
        """Deliver queued events in order, outside the bookkeeping lock."""
        pending = self.pending
        while pending:
            if not self.dispatching.acquire(blocking=False):
                return  # the thread that holds it delivers ours too (it re-checks below)
            try:
                while True:
                    try:
                        event = pending.popleft()
                    except IndexError:
                        break
                    self._deliver(event)
            finally:
                self.dispatching.release()

    def _deliver(self, event: Any) -> None:
        if isinstance(event, StateChangeEvent):
            level = logging.WARNING if event.to_state is BreakerState.OPEN else logging.INFO
            logger.log(
                level,
                "circuit breaker %r: %s -> %s (%s)",
                event.name,
                event.from_state.value,
                event.to_state.value,
                event.reason,
            )
            listeners = self.state_listeners
        else:
            listeners = self.call_listeners
        for listener in tuple(listeners):
            try:
                listener(event)
            except Exception:
                logger.exception("circuit breaker %r: event listener failed", self.name)
