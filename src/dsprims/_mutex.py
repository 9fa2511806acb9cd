"""Mutexes for critical sections of a few hundred nanoseconds (internal).

``threading.Lock`` and ``RLock`` parse their ``blocking``/``timeout`` arguments with CPython's
generic keyword-argument parser on every ``acquire``: on CPython 3.11 an uncontended
acquire/release pair costs about as much as a whole rate-limit decision's arithmetic. The
mutexes here keep the uncontended case to two C calls on a ``collections.deque``.

* :class:`TokenMutex`: not reentrant, the building block (the lock of the hybrid logical clock
  and of the circuit breaker).
* :class:`ReentrantMutex`: reentrant for ``with`` blocks, and exposes the raw token to hot paths
  (the memory backend's lock, taken raw by the rate limiters).
"""

from __future__ import annotations

import contextlib
import queue
from collections import deque
from threading import get_ident

__all__ = ["ReentrantMutex", "TokenMutex"]

#: How long a waiting thread sleeps at most before it looks for the token again (seconds).
_RECHECK_S = 0.001


class TokenMutex:
    """A lock that is one token in a ``collections.deque``.

    ``pop()`` takes the token and ``append()`` gives it back, one C call each. Deque appends and
    pops are atomic and thread-safe (documented, and so in free-threaded builds too), so only one
    thread can hold the token, whatever the GIL does. On CPython 3.11 an uncontended
    take-and-give costs about half of ``queue.SimpleQueue``'s ``get``/``put`` and a quarter of
    ``threading.Lock``'s ``acquire``/``release``.

    The hot paths inline the uncontended case: ``pop()``, and on ``IndexError`` (the token is
    out) :meth:`wait`; then ``append(None)``, and :meth:`wake` when ``waiters`` is not empty. A
    waiter registers in ``waiters`` before each look for the token, and a giver checks
    ``waiters`` after putting the token back, so a waiter either finds the token or is sent a
    wake-up. Waiters also look again every ``_RECHECK_S`` seconds, so a wake-up that arrives
    late or not at all (two threads racing for one) only delays a waiter, never strands it.
    Like ``threading.Lock``, it is not reentrant and not fair (a running thread may take the
    token back before a woken waiter does).

    Asynchronous exceptions: CPython raises ``KeyboardInterrupt`` (and the exceptions of other
    signal handlers) at its next check for pending calls, which follows every call. One that
    fires right as ``pop()`` returns is raised *at* that call, inside its ``try`` block, with
    the token already taken (``pop()`` itself runs no Python code): every taker therefore
    catches ``BaseException`` there and gives the token back (:meth:`give_back`) before
    re-raising, as :meth:`wait` does for its own returns. A ``KeyboardInterrupt`` during the
    hot path of a rate limiter or a clock thus leaves the mutex free.
    """

    __slots__ = ("_wakeups", "append", "pop", "waiters")

    def __init__(self) -> None:
        token: deque[None] = deque([None])
        #: Take the token; ``IndexError`` when another thread holds it.
        self.pop = token.pop
        #: Give the token back: call with ``None``, then :meth:`wake` if ``waiters``.
        self.append = token.append
        #: One entry per thread blocked in :meth:`wait`.
        self.waiters: deque[None] = deque()
        self._wakeups: queue.SimpleQueue[None] = queue.SimpleQueue()

    def wait(self) -> None:
        """Take the token, blocking until a holder gives it back."""
        pop = self.pop
        waiters = self.waiters
        waiters.append(None)
        got = False
        try:
            try:
                while True:
                    try:
                        pop()
                    except IndexError:
                        pass
                    except BaseException:  # raised as pop() returned: the token is ours
                        got = True
                        raise
                    else:
                        got = True
                        return
                    with contextlib.suppress(queue.Empty):
                        self._wakeups.get(timeout=_RECHECK_S)
            finally:
                waiters.pop()
        except BaseException:  # interrupted holding the token: never keep it
            if got:
                self.give_back()
            raise

    def wake(self) -> None:
        """Signal the waiters that the token is back (one pending wake-up is enough)."""
        if self._wakeups.empty():
            self._wakeups.put(None)

    def give_back(self, *_exc_info: object) -> None:
        """Give the token back and wake a waiter if any (also the mutex's ``__exit__``)."""
        self.append(None)
        if self.waiters:
            self.wake()

    def __enter__(self) -> None:
        try:
            self.pop()
        except IndexError:
            self.wait()
        except BaseException:  # raised as pop() returned (see above)
            self.give_back()
            raise

    __exit__ = give_back


class ReentrantMutex:
    """A reentrant lock over a :class:`TokenMutex`, whose token hot paths may take directly.

    ``with mutex:`` (or :meth:`acquire`/:meth:`release`) works like ``threading.RLock``: the
    holding thread may enter again, and the token goes back when it leaves the outermost block.

    A hot path takes the token itself, without recording an owner: ``mutex.take()`` (raises
    ``IndexError`` when the token is out), the critical section, then ``mutex.give(None)`` and
    ``mutex.wake()`` when ``mutex.waiters``; and on any other exception at ``take()``, give it
    back and re-raise (see :class:`TokenMutex`). The token being out means some thread holds the
    mutex, possibly the calling thread inside its own ``with mutex:`` block, so on
    ``IndexError`` a hot path must not wait for the token: it takes its ``with mutex:`` route
    instead, which re-enters (same thread) or waits (another thread). For the same reason, a
    hot path holding the raw token must give it back before calling anything that may enter
    the mutex.
    """

    __slots__ = ("_depth", "_mutex", "_owner", "give", "take", "waiters", "wake")

    def __init__(self) -> None:
        mutex = TokenMutex()
        self._mutex = mutex
        #: Take the token without recording an owner; ``IndexError`` when it is out.
        self.take = mutex.pop
        #: Give back a token taken with :attr:`take`: call with ``None``, then :attr:`wake`
        #: if :attr:`waiters` is not empty.
        self.give = mutex.append
        self.waiters = mutex.waiters
        self.wake = mutex.wake
        # The thread holding the token through acquire (None when free or held through take),
        # and how many times it entered. Written only by that thread while it holds the token.
        self._owner: int | None = None
        self._depth = 0

    def acquire(self) -> bool:
        """Take the mutex, blocking while another thread holds it; reentrant. Returns ``True``."""
        # Written out rather than layered on TokenMutex's __enter__/__exit__: every transact of
        # the memory backend pays these two calls.
        me = get_ident()
        if self._owner == me:
            self._depth += 1
            return True
        try:
            self.take()
        except IndexError:
            self._mutex.wait()
        except BaseException:  # raised as take() returned (see TokenMutex)
            self._mutex.give_back()
            raise
        self._owner = me
        self._depth = 1
        return True

    def release(self, *_exc_info: object) -> None:
        """Leave the mutex once; the token goes back when the outermost hold ends.

        Also the mutex's ``__exit__`` (which passes the exception details, ignored here).

        Raises:
            RuntimeError: the calling thread does not hold the mutex through :meth:`acquire`.
        """
        if self._owner != get_ident():
            raise RuntimeError("cannot release a mutex this thread does not hold")
        depth = self._depth - 1
        self._depth = depth
        if not depth:
            self._owner = None
            self.give(None)  # give_back, inlined: every with-block exit runs this
            if self.waiters:
                self.wake()

    __enter__ = acquire
    __exit__ = release
