"""The library's mutexes (``dsprims._mutex``): exclusion, reentrance, and interrupts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from dsprims._mutex import ReentrantMutex, TokenMutex
from tests.interrupts import InterruptedTake

PER_THREAD = 300


def _increment_under_contention(lock_ways: list[Callable[[Callable[[], None]], None]]) -> int:
    """Eight threads, each running ``PER_THREAD`` read-modify-writes of one counter inside one
    of ``lock_ways`` (taken in turn), yielding between the read and the write so that another
    thread runs while the lock is held. Returns the final count."""
    shared = {"n": 0}

    def increment() -> None:
        seen = shared["n"]
        time.sleep(0)  # another thread runs while the token is out
        shared["n"] = seen + 1

    def work(locked: Callable[[Callable[[], None]], None]) -> None:
        for _ in range(PER_THREAD):
            locked(increment)

    threads = [
        threading.Thread(target=work, args=(lock_ways[i % len(lock_ways)],)) for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return shared["n"]


def _token_is_back_once(take: Callable[[], object]) -> None:
    take()
    with pytest.raises(IndexError):
        take()


def test_token_mutex_excludes_a_read_modify_write() -> None:
    mutex = TokenMutex()

    def with_block(step: Callable[[], None]) -> None:
        with mutex:
            step()

    assert _increment_under_contention([with_block]) == 8 * PER_THREAD
    assert not mutex.waiters  # every waiter deregistered
    _token_is_back_once(mutex.pop)


def test_raw_token_holders_and_with_blocks_exclude_each_other() -> None:
    # Hot paths take the token without recording an owner; `with` users record one.
    lock = ReentrantMutex()

    def raw(step: Callable[[], None]) -> None:
        try:
            lock.take()
        except IndexError:  # held: the hot paths' route is the with-block
            with lock:
                step()
            return
        try:
            step()
        finally:
            lock.give(None)
            if lock.waiters:
                lock.wake()

    def nested(step: Callable[[], None]) -> None:
        with lock, lock:
            step()

    assert _increment_under_contention([raw, nested]) == 8 * PER_THREAD
    assert not lock.waiters
    _token_is_back_once(lock.take)


def test_an_interrupt_as_a_waiter_takes_the_token_leaves_the_mutex_free() -> None:
    mutex = TokenMutex()
    mutex.pop()  # held by "another thread" until the waiter has registered
    interrupted = InterruptedTake(mutex.pop)
    mutex.pop = interrupted
    caught: list[BaseException] = []

    def waiter() -> None:
        try:
            mutex.wait()
        except KeyboardInterrupt as exc:
            caught.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    deadline = time.monotonic() + 5
    while not mutex.waiters:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    mutex.give_back()
    thread.join(5)
    assert len(caught) == 1
    assert not mutex.waiters
    _token_is_back_once(interrupted.take)
