"""LamportClock: the two rules, thread safety, message helpers."""

from __future__ import annotations

import threading

import pytest

from dsprims import LamportClock, Stamped
from dsprims.clocks import lamport_receive, lamport_tick


def test_rules() -> None:
    assert lamport_tick(4) == 5
    assert lamport_receive(4, 9) == 10
    assert lamport_receive(9, 4) == 10
    clock = LamportClock()
    assert (clock.tick(), clock.tick(), clock.receive(10), clock.receive(3), clock.value) == (
        1,
        2,
        11,
        12,
        12,
    )
    assert repr(clock) == "LamportClock(value=12)"


def test_validation() -> None:
    with pytest.raises(ValueError, match="start"):
        LamportClock(-1)
    with pytest.raises(TypeError, match="start"):
        LamportClock(1.0)  # type: ignore[arg-type]
    clock = LamportClock(5)
    with pytest.raises(ValueError, match="remote"):
        clock.receive(-1)
    with pytest.raises(TypeError, match="remote"):
        clock.receive("7")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="remote"):
        clock.receive(True)
    assert clock.value == 5


def test_messages() -> None:
    a, b = LamportClock(), LamportClock(7)
    sent = a.stamp(b"payload")
    assert sent == Stamped(b"payload", 1)
    assert b.receive_message(sent) == Stamped(b"payload", 8)
    with pytest.raises(TypeError, match="message"):
        b.receive_message(3)  # type: ignore[arg-type]


def test_threads_never_lose_a_tick() -> None:
    clock = LamportClock()
    seen: list[list[int]] = [[] for _ in range(4)]

    def work(out: list[int]) -> None:
        for _ in range(5_000):
            out.append(clock.tick())

    threads = [threading.Thread(target=work, args=(out,)) for out in seen]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert clock.value == 20_000
    assert sorted(v for out in seen for v in out) == list(range(1, 20_001))
