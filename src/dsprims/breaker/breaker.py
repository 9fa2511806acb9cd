"""Circuit breakers for sync and asyncio code: ``CircuitBreaker`` and ``AsyncCircuitBreaker``.

Both are thin shells over one bookkeeping engine (:mod:`dsprims.breaker._engine`) and the pure
state machine (:mod:`dsprims.breaker.core`), which follows Resilience4j's CircuitBreaker
(count/time sliding windows, failure-rate and slow-call-rate thresholds after ``minimum_calls``,
a fixed number of half-open trial permits, exception filters and result predicates).

Guarantees:

* The protected call never runs under a lock; in ``CLOSED`` admission takes no lock at all, so
  concurrent calls run in parallel. Outcomes are recorded under a short lock, which makes the
  breaker correct without relying on the GIL.
* In ``HALF_OPEN`` exactly ``half_open_calls`` permits are issued per half-open period, across
  threads and tasks; an ignored or cancelled trial gives its permit back, and outcomes of calls
  admitted under an older generation are discarded.
* ``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit`` and ``asyncio.CancelledError`` are never
  failures. The call that trips the breaker raises its own exception; rejected calls raise
  :class:`~dsprims.CircuitOpenError` with the breaker's name and ``retry_after``.
* Events reach callbacks in the order the state changed, outside the lock, one at a time.

Failure modes: a call admitted in ``CLOSED`` just before another thread trips the breaker still
runs (admission linearises at its read of the state), and its outcome is discarded. A custom
``trip_predicate`` runs under the lock and must be fast and pure.
"""

from __future__ import annotations

import functools
import inspect
import random
import types
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from types import TracebackType
from typing import Any, Literal, ParamSpec, TypeVar, overload

from dsprims.backends.base import DEFAULT_PREFIX, check_name, check_prefix, namespaced_key
from dsprims.backends.memory import AsyncMemoryBackend, MemoryBackend
from dsprims.backends.url import client_kind, resolve_async_backend, resolve_backend
from dsprims.breaker._engine import IGNORED, ExceptionFilter, ResultPredicate, _Engine
from dsprims.breaker.core import (
    FAILURE,
    SUCCESS,
    Admission,
    BreakerParams,
    BreakerSnapshot,
    BreakerState,
    TripPredicate,
)
from dsprims.breaker.events import BreakerMetrics, CallEvent, StateChangeEvent
from dsprims.breaker.fleet import AsyncFleetLink, FleetLink, Steps, adrive, drive
from dsprims.errors import CircuitOpenError, ConfigurationError
from dsprims.timesource import SYSTEM_CLOCK, Clock

__all__ = ["AsyncCircuitBreaker", "AsyncPermit", "CircuitBreaker", "Permit"]

P = ParamSpec("P")
_INF = float("inf")
R = TypeVar("R")


def _check_filter(name: str, value: Any) -> ExceptionFilter:
    if callable(value) and not isinstance(value, type):
        return value  # type: ignore[no-any-return]
    if isinstance(value, type):
        value = (value,)
    if not isinstance(value, tuple) or not all(
        isinstance(t, type) and issubclass(t, BaseException) for t in value
    ):
        raise TypeError(
            f"{name} must be an exception class, a tuple of them, or a predicate, got {value!r}"
        )
    return value


class _PermitBase:
    __slots__ = ("_engine", "_settled", "_t0", "generation", "trial")

    def __init__(self, engine: _Engine, generation: int, trial: bool) -> None:
        self._engine = engine
        self.generation = generation
        self.trial = trial
        self._settled = False
        self._t0 = engine.mono() if engine.timed else 0.0

    @property
    def settled(self) -> bool:
        """Whether an outcome was already reported."""
        return self._settled

    def _finish(self, code: int, exc: BaseException | None) -> Steps | None:
        # A permit is owned by one caller; settling twice is a bug worth reporting loudly.
        if self._settled:
            raise RuntimeError("this permit was already settled")
        self._settled = True
        e = self._engine
        return e.finish(
            self.generation, self.trial, code, e.mono() - self._t0 if e.timed else 0.0, exc
        )

    async def _afinish(self, code: int, exc: BaseException | None) -> None:
        follow = self._finish(code, exc)
        if follow is not None:
            await _drive_async(self._engine, follow)

    def __repr__(self) -> str:
        kind = "trial" if self.trial else "permit"
        return f"<{kind} of {self._engine.name!r} gen={self.generation} settled={self._settled}>"


class Permit(_PermitBase):
    """Permission for one call, from :meth:`CircuitBreaker.try_acquire`; settle it exactly once.

    Also a context manager: on exit an unsettled permit is settled from the exception (or as a
    success).
    """

    __slots__ = ()

    def success(self) -> None:
        """Record the call as a success (slow if it took ``slow_call_duration`` or more)."""
        self._finish(SUCCESS, None)

    def failure(self, exc: BaseException | None = None) -> None:
        """Record the call as a failure."""
        self._finish(FAILURE, exc)

    def ignore(self) -> None:
        """Record nothing; a half-open permit is given back for another trial."""
        self._finish(IGNORED, None)

    def record_exception(self, exc: BaseException) -> None:
        """Classify ``exc`` with the breaker's ``record``/``ignore`` filters and settle."""
        self._finish(self._engine.classify(exc), exc)

    def record_result(self, result: object) -> None:
        """Settle from a return value with the breaker's ``record_result`` predicate."""
        self._finish(self._engine.result_code(result), None)

    def __enter__(self) -> Permit:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._settled:
            if exc is None:
                self.success()
            else:
                self.record_exception(exc)


class AsyncPermit(_PermitBase):
    """The asyncio twin of :class:`Permit` (its methods are coroutines)."""

    __slots__ = ()

    async def success(self) -> None:
        """See :meth:`Permit.success`."""
        await self._afinish(SUCCESS, None)

    async def failure(self, exc: BaseException | None = None) -> None:
        """See :meth:`Permit.failure`."""
        await self._afinish(FAILURE, exc)

    async def ignore(self) -> None:
        """See :meth:`Permit.ignore`."""
        await self._afinish(IGNORED, None)

    async def record_exception(self, exc: BaseException) -> None:
        """See :meth:`Permit.record_exception`."""
        await self._afinish(self._engine.classify(exc), exc)

    async def record_result(self, result: object) -> None:
        """See :meth:`Permit.record_result`."""
        await self._afinish(self._engine.result_code(result), None)

    async def __aenter__(self) -> AsyncPermit:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._settled:
            if exc is None:
                await self.success()
            else:
                await self.record_exception(exc)


class _BreakerBase:
    """Configuration, inspection and listeners shared by both flavours."""

    def __init__(
        self,
        name: str,
        *,
        failure_rate_threshold: float = 0.5,
        minimum_calls: int = 10,
        window_size: float = 100,
        window_type: Literal["count", "time"] = "count",
        slow_call_duration: float | None = None,
        slow_call_rate_threshold: float = 1.0,
        open_duration: float = 30.0,
        open_duration_multiplier: float = 1.0,
        max_open_duration: float | None = None,
        open_duration_jitter: float = 0.0,
        half_open_calls: int = 1,
        max_half_open_wait: float | None = None,
        consecutive_failures: int | None = None,
        record: ExceptionFilter = (Exception,),
        ignore: ExceptionFilter = (),
        record_result: ResultPredicate | None = None,
        trip_predicate: TripPredicate | None = None,
        clock: Clock | None = None,
        backend: Any = None,
        prefix: str = DEFAULT_PREFIX,
        rng: random.Random | None = None,
        retry_interval: float = 1.0,
    ) -> None:
        check_name(name, param="name")
        check_prefix(prefix)
        params = BreakerParams(
            failure_rate_threshold=failure_rate_threshold,
            minimum_calls=minimum_calls,
            window_size=window_size,
            window_type=window_type,
            slow_call_duration=slow_call_duration,
            slow_call_rate_threshold=slow_call_rate_threshold,
            open_duration=open_duration,
            open_duration_multiplier=open_duration_multiplier,
            max_open_duration=max_open_duration,
            open_duration_jitter=open_duration_jitter,
            half_open_calls=half_open_calls,
            max_half_open_wait=max_half_open_wait,
            consecutive_failures=consecutive_failures,
        )
        record = _check_filter("record", record)
        ignore = _check_filter("ignore", ignore)
        if record_result is not None and not callable(record_result):
            raise TypeError("record_result must be a callable or None")
        if trip_predicate is not None and not callable(trip_predicate):
            raise TypeError("trip_predicate must be a callable or None")
        self._name = name
        self._prefix = prefix
        self._clock = clock if clock is not None else SYSTEM_CLOCK

        def make() -> _Engine:
            return _Engine(
                name,
                params,
                self._clock,
                record=record,
                ignore=ignore,
                record_result=record_result,
                trip_predicate=trip_predicate,
                rng=rng,
            )

        if isinstance(retry_interval, bool) or not isinstance(retry_interval, int | float):
            raise TypeError("retry_interval must be a number of seconds")
        if not (0 < retry_interval < float("inf")):
            raise ConfigurationError(f"retry_interval must be > 0 seconds, got {retry_interval!r}")
        self._owned_backend: Any = None
        if isinstance(backend, AsyncMemoryBackend):
            backend = backend.store
        if isinstance(backend, str) and backend.startswith("memory://"):
            backend = None
        if isinstance(backend, str):
            if not backend.startswith(("redis://", "rediss://", "redis+cluster://")):
                raise ConfigurationError(
                    f"backend URL {backend!r}: the breaker shares state on Redis only"
                )
            from dsprims.backends.url import async_backend_from_url, backend_from_url

            backend = (async_backend_from_url if self._is_async else backend_from_url)(backend)
            self._owned_backend = backend
        elif client_kind(backend) in ("redis", "aredis"):  # a redis-py client: the caller's
            backend = (resolve_async_backend if self._is_async else resolve_backend)(backend)
        if backend is None:
            self._engine = make()
        elif isinstance(backend, MemoryBackend):
            self._engine = _shared_engine(backend, namespaced_key(prefix, name, "breaker"), make)
        elif getattr(backend, "kind", None) == "redis":
            self._engine = make()
            self._engine.retry_interval = float(retry_interval)
            self._attach(backend, name, prefix, pinned=clock is not None)
        else:
            raise ConfigurationError(
                f"backend must be None, a MemoryBackend, a RedisBackend or a URL, "
                f"got {type(backend).__name__}"
            )
        self._stack: ContextVar[tuple[Any, ...]] = ContextVar(f"dsprims-breaker-{name}")
        self._run_sync = _sync_runner(self._engine)
        self._run_async = _async_runner(self._engine)
        # ``call`` is the runner itself, set on the instance (it shadows the documented method,
        # which delegates to it): one Python frame per call instead of two. A subclass that
        # overrides ``call`` keeps its override.
        method = getattr(type(self), "call", None)
        if method is _PLAIN_CALLS.get(self._is_async):
            run = self._run_async if self._is_async else self._run_sync
            run.__doc__ = method.__doc__
            self.__dict__["call"] = run

    _is_async = False

    def _attach(self, backend: Any, name: str, prefix: str, *, pinned: bool) -> None:
        from dsprims.backends.redis import AsyncRedisBackend, RedisBackend

        e = self._engine
        if self._is_async:
            if not isinstance(backend, AsyncRedisBackend):
                raise ConfigurationError("AsyncCircuitBreaker needs an AsyncRedisBackend")
            alink = AsyncFleetLink(backend, name, prefix, self._clock, pinned)
            e.alink, e.now = alink, alink.now
            e.snap = BreakerSnapshot(since=alink.now())
            return
        if not isinstance(backend, RedisBackend):
            raise ConfigurationError("CircuitBreaker needs a (sync) RedisBackend")
        link = FleetLink(backend, name, prefix, self._clock, pinned)
        e.link, e.now = link, link.now
        e.snap = BreakerSnapshot(since=link.now())
        drive(e.read_steps(), link.run)  # bounded by the client's timeout; down -> local
        link.start(e.on_message, lambda: drive(e.read_steps(), link.run))

    # -- inspection --------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The breaker's name (as given; it also names the shared key in fleet mode)."""
        return self._name

    @property
    def params(self) -> BreakerParams:
        """The validated configuration."""
        return self._engine.params

    @property
    def state(self) -> BreakerState:
        """The current state (an ``OPEN`` whose duration passed reads as ``HALF_OPEN``)."""
        return self._engine.state()

    def metrics(self) -> BreakerMetrics:
        """A frozen snapshot of the breaker's statistics."""
        return self._engine.metrics()

    # -- listeners ---------------------------------------------------------------------------

    def on_state_change(
        self, callback: Callable[[StateChangeEvent], object]
    ) -> Callable[[StateChangeEvent], object]:
        """Call ``callback(event)`` after every state change (usable as a decorator).

        Callbacks run outside the breaker's lock, one at a time, in the order of the changes.
        An exception in a callback is logged and does not reach the caller.
        """
        self._engine.state_listeners.append(callback)
        return callback

    def on_call(self, callback: Callable[[CallEvent], object]) -> Callable[[CallEvent], object]:
        """Call ``callback(event)`` for every call outcome and rejection (see on_state_change)."""
        self._engine.add_call_listener(callback)
        return callback

    def remove_listener(self, callback: Callable[[Any], object]) -> None:
        """Stop calling ``callback`` (no error if it was not registered)."""
        for listeners in (self._engine.state_listeners, self._engine.call_listeners):
            while callback in listeners:
                listeners.remove(callback)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name!r}, state={self._engine.snap.state.value})"


def _shared_engine(backend: MemoryBackend, key: str, make: Callable[[], _Engine]) -> _Engine:
    # Breakers of one name on one MemoryBackend share one engine (state and window), like
    # processes sharing a Redis key; their configurations must agree.
    def fn(old: _Engine | None) -> tuple[_Engine, _Engine]:
        engine = old if old is not None else make()
        return engine, engine

    engine = backend.transact(key, fn)
    fresh = make()
    if engine.params != fresh.params:
        raise ConfigurationError(
            f"breaker {engine.name!r} already exists on this backend with other parameters "
            f"({engine.params}); use another name or prefix"
        )
    return engine


def _sync_runner(engine: _Engine) -> Callable[..., Any]:
    """The one sync call path: ``run(fn, *args, **kwargs)``.

    A breaker's ``call`` is this function itself (installed on the instance, so a call runs one
    Python frame); the decorators wrap it with their function bound.
    """

    def call(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        e = engine
        gen = e.closed_gen
        trial = False
        if gen < 0:
            # Rejection inline (no extra frame to unwind): an open period that has not ended.
            now = e.now()
            until = e.reject_until
            if now < until:  # -inf with call listeners (their events need the slow path)
                next(e.rejection_ticks)  # _Engine.count_rejection, inlined
                raise CircuitOpenError(e.name, until - now if until != _INF else 0.0)
            adm = e.acquire()
            gen = adm.generation
            trial = adm.trial
        t0 = e.mono() if e.timed else 0.0
        try:
            # Without keywords, no empty dict is copied for the call (CPython 3.11 builds one
            # for every ``**kwargs`` spread).
            result = fn(*args, **kwargs) if kwargs else fn(*args)
        except BaseException as exc:
            e.finish(gen, trial, e.classify(exc), e.mono() - t0 if e.timed else 0.0, exc)
            raise
        if e.quiet:
            return result  # recording this success would change nothing (see _Engine.quiet)
        if e.plain and not trial:
            success = e.success  # a slot read: CPython 3.11 has no fast method load for it
            success(gen)
        else:
            e.finish(
                gen,
                trial,
                SUCCESS if e.record_result is None else e.result_code(result),
                e.mono() - t0 if e.timed else 0.0,
            )
        return result

    return call


def _async_runner(engine: _Engine) -> Callable[..., Coroutine[Any, Any, Any]]:
    """The one async call path: ``await run(fn, *args, **kwargs)`` (see :func:`_sync_runner`).

    ``AsyncCircuitBreaker.call`` is this coroutine function itself, so ``await breaker.call(fn)``
    builds one coroutine and a rejection unwinds one frame.
    """

    async def call(fn: Callable[..., Awaitable[Any]], /, *args: Any, **kwargs: Any) -> Any:
        e = engine
        gen = e.closed_gen
        trial = False
        if gen < 0:
            now = e.now()
            until = e.reject_until
            if now < until:  # -inf with call listeners (their events need the slow path)
                next(e.rejection_ticks)  # _Engine.count_rejection, inlined
                raise CircuitOpenError(e.name, until - now if until != _INF else 0.0)
        alink = e.alink
        if alink is not None and not alink.started:
            # Checked after the rejection fast path, which cannot fire before the link has
            # started: only the link's own transitions (which start it first) open the breaker.
            await _start_async_link(e, alink)
            gen = e.closed_gen
        if gen < 0:
            adm = e.acquire() if alink is None else await _acquire_async(e)
            gen = adm.generation
            trial = adm.trial
        t0 = e.mono() if e.timed else 0.0
        try:
            # Without keywords, no empty dict is copied for the call (see the sync runner).
            result = await (fn(*args, **kwargs) if kwargs else fn(*args))
        except BaseException as exc:
            follow = e.finish(gen, trial, e.classify(exc), e.mono() - t0 if e.timed else 0.0, exc)
            if follow is not None:
                await _drive_async(e, follow)
            raise
        if e.quiet:
            return result  # recording this success would change nothing (see _Engine.quiet)
        if e.plain and not trial:
            success = e.success  # a slot read (see the sync runner)
            follow = success(gen)
        else:
            follow = e.finish(
                gen,
                trial,
                SUCCESS if e.record_result is None else e.result_code(result),
                e.mono() - t0 if e.timed else 0.0,
            )
        if follow is not None:
            await _drive_async(e, follow)
        return result

    return call


class _Bound(functools.partial):  # type: ignore[type-arg]
    """A decorator's wrapper: the call path with the function bound, as a ``functools.partial``.

    Calling it runs the runner directly (the partial is C code: no extra Python frame, and for
    ``async def`` no second coroutine); ``inspect.iscoroutinefunction`` sees through a partial.
    A partial does not bind as a method by itself, so ``__get__`` does it, keeping decorated
    methods working like decorated functions.
    """

    def __get__(self, obj: object, objtype: type | None = None) -> Any:
        return self if obj is None else types.MethodType(self, obj)

    def __repr__(self) -> str:
        return f"<circuit-breaker guarded {self.args[0]!r}>"


def _guard_sync(run: Callable[..., Any], fn: Callable[P, R]) -> Callable[P, R]:
    """The decorator's wrapper for a plain function (see :class:`_Bound`)."""
    return _Bound(run, fn)


def _guard_async(
    run: Callable[..., Coroutine[Any, Any, Any]], fn: Callable[P, Awaitable[R]]
) -> Callable[P, Coroutine[Any, Any, R]]:
    """The decorator's wrapper for an ``async def`` function (see :class:`_Bound`)."""
    return _Bound(run, fn)


async def _start_async_link(e: _Engine, link: AsyncFleetLink) -> None:
    # First use on a loop: read the shared state once, then follow it by subscription.
    link.ensure_started(e.on_message, lambda: adrive(e.read_steps(), link.run))
    await adrive(e.read_steps(), link.run)


async def _drive_async(e: _Engine, steps: Steps) -> Any:
    assert e.alink is not None  # only async links hand round trips back to the shell
    return await adrive(steps, e.alink.run)


async def _acquire_async(e: _Engine) -> Admission:
    link = e.alink
    assert link is not None

    async def give_back(adm: Admission | None) -> None:
        # The caller was cancelled while its permit was being granted: nobody will use it.
        if adm is not None and adm.trial:
            await adrive(e.trial_steps(adm.generation, IGNORED, 0.0, None), link.run)

    return e.admit(await adrive(e.acquire_steps(), link.run, give_back))


class CircuitBreaker(_BreakerBase):
    """A circuit breaker for synchronous code (also decorates ``async def`` functions).

    Args:
        name: the breaker's name (any non-empty string; it is data, never code).
        failure_rate_threshold: trip when failures / calls reaches this, in (0, 1].
        minimum_calls: calls the window must hold before rates are evaluated.
        window_size: calls (``window_type="count"``) or seconds (``"time"``) in the window.
        window_type: ``"count"`` or ``"time"``.
        slow_call_duration: calls taking at least this many seconds are slow; None disables
            slow-call detection (and every clock read on the hot path of count windows).
        slow_call_rate_threshold: trip when slow calls / calls reaches this, in (0, 1].
        open_duration: seconds ``OPEN`` lasts the first time.
        open_duration_multiplier: each further consecutive open lasts this many times longer
            (1.0 = fixed, 2.0 = exponential backoff); reset when the breaker closes.
        max_open_duration: cap on the open duration (default: one day).
        open_duration_jitter: spread each open duration uniformly by ± this fraction.
        half_open_calls: trial calls let through in ``HALF_OPEN``.
        max_half_open_wait: re-open when ``HALF_OPEN`` has not reached a verdict after this
            many seconds (None waits for the trials however long they take).
        consecutive_failures: also trip after this many failures in a row (None: off).
        record: exception classes counted as failures, or a predicate on the exception.
            Exceptions matching neither ``record`` nor ``ignore`` count as successes.
        ignore: exception classes (or a predicate) that are not recorded at all.
        record_result: predicate on a return value that makes it count as a failure.
        trip_predicate: extra trip rule, called with :class:`~dsprims.breaker.WindowCounts`
            after each recorded outcome; runs under the lock, so keep it fast and pure.
        clock: time source (default: the system clock).
        backend: None (a private in-process breaker), a ``MemoryBackend`` (breakers of the
            same name on it share state), a Redis backend, URL or redis-py client (fleet
            mode; a client passed in stays yours to close).
        prefix: key namespace on the backend.
        rng: random source for jitter (default: a private ``random.Random``).

    Raises:
        ConfigurationError: a threshold outside (0, 1], a window < 1, a negative duration.
        TypeError: a parameter of the wrong type.

    Example:
        >>> from dsprims import CircuitBreaker
        >>> breaker = CircuitBreaker("payments", minimum_calls=2, window_size=4)
        >>> breaker.call(lambda: 42)
        42
    """

    # -- calling --------------------------------------------------------------------------------

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` under the breaker and return its result.

        Raises:
            CircuitOpenError: the breaker rejected the call (``fn`` did not run).
            BaseException: whatever ``fn`` raised, after recording it.
        """
        # Only reached through the class (``CircuitBreaker.call(breaker, fn)``) or from a
        # subclass: instances carry the runner itself as ``call`` (see ``__init__``).
        return self._run_sync(fn, *args, **kwargs)  # type: ignore[no-any-return]

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await ``fn(*args, **kwargs)`` under the breaker (see :meth:`call`)."""
        return await self._run_async(fn, *args, **kwargs)  # type: ignore[no-any-return]

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a function (plain or ``async def``) so every call goes through the breaker."""
        if inspect.iscoroutinefunction(fn):
            return functools.wraps(fn)(_guard_async(self._run_async, fn))
        return functools.wraps(fn)(_guard_sync(self._run_sync, fn))

    def try_acquire(self) -> Permit:
        """Ask for permission for one call; settle the returned permit when it is done.

        Raises:
            CircuitOpenError: the breaker rejects calls now.
        """
        e = self._engine
        gen = e.closed_gen
        if gen >= 0:
            return Permit(e, gen, False)
        adm = e.acquire()
        return Permit(e, adm.generation, adm.trial)

    def __enter__(self) -> Permit:
        permit = self.try_acquire()
        self._stack.set((*self._stack.get(()), permit))
        return permit

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack = self._stack.get(())
        permit = stack[-1]
        self._stack.set(stack[:-1])
        permit.__exit__(exc_type, exc, tb)

    def close(self) -> None:
        """Release fleet-mode resources (the subscriber thread, a backend made from a URL).

        The breaker keeps working locally afterwards. Nothing to do without a shared backend.
        """
        if self._engine.link is not None:
            self._engine.link.close()
        if self._owned_backend is not None:
            self._owned_backend.close()
            self._owned_backend = None

    # -- manual control ------------------------------------------------------------------------

    def force_open(self) -> None:
        """Reject every call until another manual transition (state ``FORCED_OPEN``)."""
        self._engine.transition(BreakerState.FORCED_OPEN, reset=False, reason="force_open()")

    def disable(self) -> None:
        """Let every call through and record nothing until another manual transition."""
        self._engine.transition(BreakerState.DISABLED, reset=False, reason="disable()")

    def reset(self) -> None:
        """Back to a fresh ``CLOSED``: window, rejection count and backoff all forgotten."""
        self._engine.transition(BreakerState.CLOSED, reset=True, reason="reset()")

    def transition_to_closed(self) -> None:
        """Move to ``CLOSED`` with an empty window (the backoff count is reset too)."""
        self._engine.transition(BreakerState.CLOSED, reset=False, reason="transition_to_closed()")

    def transition_to_open(self) -> None:
        """Move to ``OPEN`` for the next open duration (it then half-opens as usual)."""
        self._engine.transition(BreakerState.OPEN, reset=False, reason="transition_to_open()")

    def transition_to_half_open(self) -> None:
        """Move to ``HALF_OPEN`` now, issuing fresh trial permits."""
        self._engine.transition(
            BreakerState.HALF_OPEN, reset=False, reason="transition_to_half_open()"
        )

    def transition_to(self, state: BreakerState) -> None:
        """Move to ``state`` (any of the five) now."""
        if not isinstance(state, BreakerState):
            raise TypeError(f"state must be a BreakerState, got {state!r}")
        self._engine.transition(state, reset=False, reason=f"transition_to({state.name})")


class AsyncCircuitBreaker(_BreakerBase):
    """The asyncio twin of :class:`CircuitBreaker` (same arguments).

    ``call``, ``try_acquire`` and the manual transitions are coroutines; use ``async with
    breaker:`` and decorate ``async def`` functions. A cancelled call is never a failure; a
    cancelled half-open trial gives its permit back.

    Example:
        >>> import asyncio
        >>> from dsprims import AsyncCircuitBreaker
        >>> breaker = AsyncCircuitBreaker("search")
        >>> async def fetch() -> str:
        ...     return "ok"
        >>> asyncio.run(breaker.call(fetch))
        'ok'
    """

    def call(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, R]:
        """Await ``fn(*args, **kwargs)`` under the breaker and return its result.

        ``await breaker.call(fn, ...)``; the method hands back the one coroutine that does the
        work (the instance's ``call`` is the coroutine function of the call path itself, so a
        call builds one coroutine and a rejection unwinds one frame).

        Raises:
            CircuitOpenError: the breaker rejected the call (``fn`` did not run).
            BaseException: whatever ``fn`` raised, after recording it.
        """
        # Only reached through the class or from a subclass (see CircuitBreaker.call).
        return self._run_async(fn, *args, **kwargs)

    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]:
        """Decorate an ``async def`` function so every call goes through the breaker."""
        if not inspect.iscoroutinefunction(fn):
            raise TypeError("AsyncCircuitBreaker decorates async def functions only")
        return functools.wraps(fn)(_guard_async(self._run_async, fn))

    async def try_acquire(self) -> AsyncPermit:
        """See :meth:`CircuitBreaker.try_acquire`; settle the permit with ``await``."""
        e = self._engine
        if e.alink is not None and not e.alink.started:
            await _start_async_link(e, e.alink)
        gen = e.closed_gen
        if gen >= 0:
            return AsyncPermit(e, gen, False)
        adm = e.acquire() if e.alink is None else await _acquire_async(e)
        return AsyncPermit(e, adm.generation, adm.trial)

    async def __aenter__(self) -> AsyncPermit:
        permit = await self.try_acquire()
        self._stack.set((*self._stack.get(()), permit))
        return permit

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack = self._stack.get(())
        permit = stack[-1]
        self._stack.set(stack[:-1])
        await permit.__aexit__(exc_type, exc, tb)

    _is_async = True

    async def aclose(self) -> None:
        """Release fleet-mode resources (see :meth:`CircuitBreaker.close`)."""
        if self._engine.alink is not None:
            await self._engine.alink.aclose()
        if self._owned_backend is not None:
            await self._owned_backend.aclose()
            self._owned_backend = None

    async def _atransition(self, target: BreakerState, *, reset: bool, reason: str) -> None:
        e = self._engine
        if e.alink is not None and not e.alink.started:
            await _start_async_link(e, e.alink)
        follow = self._engine.transition(target, reset=reset, reason=reason)
        if follow is not None:
            await _drive_async(self._engine, follow)

    async def force_open(self) -> None:
        """See :meth:`CircuitBreaker.force_open`."""
        await self._atransition(BreakerState.FORCED_OPEN, reset=False, reason="force_open()")

    async def disable(self) -> None:
        """See :meth:`CircuitBreaker.disable`."""
        await self._atransition(BreakerState.DISABLED, reset=False, reason="disable()")

    async def reset(self) -> None:
        """See :meth:`CircuitBreaker.reset`."""
        await self._atransition(BreakerState.CLOSED, reset=True, reason="reset()")

    async def transition_to_closed(self) -> None:
        """See :meth:`CircuitBreaker.transition_to_closed`."""
        await self._atransition(BreakerState.CLOSED, reset=False, reason="transition_to_closed()")

    async def transition_to_open(self) -> None:
        """See :meth:`CircuitBreaker.transition_to_open`."""
        await self._atransition(BreakerState.OPEN, reset=False, reason="transition_to_open()")

    async def transition_to_half_open(self) -> None:
        """See :meth:`CircuitBreaker.transition_to_half_open`."""
        await self._atransition(
            BreakerState.HALF_OPEN, reset=False, reason="transition_to_half_open()"
        )

    async def transition_to(self, state: BreakerState) -> None:
        """See :meth:`CircuitBreaker.transition_to`."""
        if not isinstance(state, BreakerState):
            raise TypeError(f"state must be a BreakerState, got {state!r}")
        await self._atransition(state, reset=False, reason=f"transition_to({state.name})")


#: The ``call`` methods an instance replaces with its runner (not a subclass's override).
_PLAIN_CALLS: dict[bool, Any] = {False: CircuitBreaker.call, True: AsyncCircuitBreaker.call}
