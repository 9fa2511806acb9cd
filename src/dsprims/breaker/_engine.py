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
import logging
import math
import random
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from dsprims.breaker.core import (
    FAILURE,
    SLOW,
    SUCCESS,
    Admission,
    BreakerParams,
    BreakerSnapshot,
    BreakerState,
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
from dsprims.errors import CircuitOpenError
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


def _matches(filt: ExceptionFilter, exc: BaseException) -> bool:
    if isinstance(filt, tuple):
        return isinstance(exc, filt)
    return bool(filt(exc))


class _Engine:
    """One breaker's state, window, counters and event queue (internal)."""

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
        self.lock = threading.Lock()
        self.window = make_window(params, trip_predicate)
        self.needs_now = params.window_type == "time"
        self.timed = params.slow_call_duration is not None
        self.slow_s = params.slow_call_duration if params.slow_call_duration is not None else 0.0
        self.rng = rng if rng is not None else random.Random()
        self.snap = BreakerSnapshot(since=self.mono())
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
        #: While OPEN (or FORCED_OPEN): the time before which calls are rejected without the
        #: core; -inf otherwise.
        self.reject_until = -math.inf
        self.rejected = 0
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
            if new.state is BreakerState.OPEN:
                self.reject_until = new.open_until
            elif new.state is BreakerState.FORCED_OPEN:
                self.reject_until = math.inf
            else:
                self.reject_until = -math.inf

    def retry_after(self, now: float) -> float:
        """Seconds until the open period ends (0.0 when unknown, as in ``FORCED_OPEN``)."""
        until = self.reject_until
        return until - now if until != math.inf else 0.0

    def add_call_listener(self, listener: Listener) -> None:
        """Register a call listener (every outcome must now go through ``finish``)."""
        with self.lock:
            self._quiet_possible = False
            self.quiet = False
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
            now = self.mono()
            if now < until:
                # Rejection without the core: the open period has not ended, nothing changes.
                with self.lock:
                    self.rejected += 1
                raise CircuitOpenError(self.name, self.retry_after(now))
        with self.lock:
            adm, new, transitions = on_acquire(self.snap, self.mono(), self.params, self.draw())
            if new is not self.snap:
                self.install(new, transitions)
            if not adm.permitted:
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

    # -- outcomes -------------------------------------------------------------------------

    def finish(
        self,
        generation: int,
        trial: bool,
        code: int,
        duration: float,
        exc: BaseException | None = None,
    ) -> None:
        """Record the outcome of an admitted call (``code`` IGNORED, SUCCESS or FAILURE)."""
        if code > IGNORED and self.timed and duration >= self.slow_s:
            code |= SLOW
        counted = False
        new: BreakerSnapshot | None = None
        transitions: tuple[Transition, ...] = ()
        with self.lock:
            if trial:
                if code == IGNORED:
                    self.snap = release_trial(self.snap, generation)
                else:
                    counted, new, transitions = settle_trial(
                        self.snap, self.mono(), generation, code, self.params, self.draw()
                    )
            elif code > IGNORED and generation == self.closed_gen:
                counted = True
                w = self.window
                reason = w.record(code, self.mono() if self.needs_now else 0.0)
                if self._quiet_possible:
                    self.quiet = w.calls == self._full and not w.failures and not w.slow
                if reason is not None:
                    new, transitions = trip(
                        self.snap, self.mono(), self.params, reason, self.draw()
                    )
            if self.call_listeners:
                # Queued before the transition: the tripping call's event comes first.
                self.pending.append(self._call_event(generation, code, counted, duration, exc))
            if new is not None:
                self.install(new, transitions)
        if self.pending:
            self.drain()

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

    def transition(self, target: BreakerState, *, reset: bool, reason: str) -> None:
        """Move to ``target`` now (manual control)."""
        with self.lock:
            new, transitions = manual_transition(
                self.snap,
                self.mono(),
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
                self.rejected = 0
        self.drain()

    def state(self) -> BreakerState:
        """The current state, after any transition that time alone causes."""
        snap = self.snap
        if snap.state is BreakerState.OPEN or snap.state is BreakerState.HALF_OPEN:
            with self.lock:
                new, transitions = advance(self.snap, self.mono(), self.params, self.draw())
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
            now = self.mono()
            snap = self.snap
            c = self.window.counts(now)
            rejected = self.rejected
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
