from __future__ import annotations

import asyncio
import math
import time

import pytest

from dsprims import Clock, ConfigurationError, ManualClock, SystemClock


def test_manual_clock_starts_where_told_and_moves_both_clocks() -> None:
    clock = ManualClock(start=12.5)
    assert clock.monotonic() == 12.5
    assert clock.time_ns() == 12_500_000_000
    clock.advance(0.25)
    assert clock.monotonic() == 12.75
    assert clock.time_ns() == 12_750_000_000
    clock.set(20.0)
    assert clock.monotonic() == 20.0
    assert clock.time_ns() == 20_000_000_000


def test_manual_clock_wall_clock_moves_alone_and_backwards() -> None:
    clock = ManualClock(start=5.0)
    clock.set_wall_ns(1_000)
    assert clock.time_ns() == 1_000
    assert clock.monotonic() == 5.0
    clock.advance(1.0)
    assert clock.time_ns() == 1_000_001_000


def test_manual_clock_sleep_advances_instead_of_sleeping() -> None:
    clock = ManualClock()
    started = time.monotonic()
    clock.sleep(3600)
    assert clock.monotonic() == 3600
    assert time.monotonic() - started < 60  # the hour was virtual
    clock.sleep(-1)
    assert clock.monotonic() == 3600


def test_manual_clock_asleep_advances() -> None:
    clock = ManualClock()
    asyncio.run(clock.asleep(2.0))
    assert clock.monotonic() == 2.0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0])
def test_manual_clock_rejects_bad_advance(bad: float) -> None:
    clock = ManualClock()
    with pytest.raises(ConfigurationError, match="seconds"):
        clock.advance(bad)
    assert clock.monotonic() == 0.0


def test_manual_clock_monotonic_never_set_backwards() -> None:
    clock = ManualClock(start=10.0)
    with pytest.raises(ConfigurationError, match="backwards"):
        clock.set(9.0)
    with pytest.raises(TypeError, match="ns"):
        clock.set_wall_ns(1.5)  # type: ignore[arg-type]


def test_both_clocks_satisfy_the_protocol() -> None:
    assert isinstance(SystemClock(), Clock)
    assert isinstance(ManualClock(), Clock)
    system = SystemClock()
    first = system.monotonic()
    assert system.monotonic() >= first
    assert abs(system.time_ns() - time.time_ns()) < 5_000_000_000
