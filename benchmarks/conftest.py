"""Benchmark conventions (read by ``benchmarks/report.py``).

Each benchmark sets ``benchmark.group`` to ``"<primitive>: <operation>"`` and
``benchmark.extra_info`` with:

* ``role``: ``"ours"``, ``"peer"`` or ``"floor"`` (the physical lower bound, e.g. one round trip);
* ``label``: what was measured (``"dsprims"``, ``"uhashring 2.5"``, ``"bare EVALSHA"``…);
* ``goal`` (optional, on a peer or floor row): the largest acceptable ``ours / this`` ratio.

The report divides the median of the group's ``ours`` row by every other row's median.

Groups that carry a goal are measured with :func:`compare` instead: one test runs every contender
of the group, interleaved, so a change in the machine's load hits all of them alike (on a shared
2-core machine, separate tests a minute apart drift by 30-80 %). Benchmarks never assert on time:
the goals are read by people.
"""

from __future__ import annotations

import asyncio
import inspect
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest


@pytest.fixture
def mark(benchmark: Any) -> Any:
    """``mark(group, role, label, goal=None)`` labels the benchmark for the report."""

    def _mark(group: str, role: str, label: str, goal: float | None = None) -> Any:
        _check_role(role)
        benchmark.group = group
        benchmark.extra_info.update(role=role, label=label)
        if goal is not None:
            benchmark.extra_info["goal"] = goal
        return benchmark

    return _mark


def _check_role(role: str) -> None:
    if role not in ("ours", "peer", "floor"):
        raise ValueError(f"role must be ours, peer or floor, got {role!r}")


@dataclass(frozen=True)
class Contender:
    """One row of a compared group: ``fn`` is one operation (sync, or a coroutine function)."""

    role: str
    label: str
    fn: Callable[[], Any] | Callable[[], Awaitable[Any]]
    goal: float | None = None


def _timed_batch(contender: Contender, n: int, loop: asyncio.AbstractEventLoop | None) -> float:
    """Seconds per call over ``n`` back-to-back calls of ``contender.fn``."""
    fn = contender.fn
    if inspect.iscoroutinefunction(fn):
        if loop is None:
            raise ValueError(f"{contender.label}: an async contender needs compare(..., loop=)")

        async def batch() -> float:
            start = time.perf_counter()
            for _ in range(n):
                await fn()
            return time.perf_counter() - start

        return loop.run_until_complete(batch()) / n
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def run_interleaved(
    contenders: Sequence[Contender],
    *,
    loop: asyncio.AbstractEventLoop | None = None,
    batch_seconds: float = 0.002,
    min_rounds: int = 15,
    budget_seconds: float = 2.0,
) -> list[dict[str, Any]]:
    """Time every contender in alternating batches; per contender, the median and paired ratio.

    Each round times one batch of every contender, in an order rotated round by round (so none
    always runs right after a particular other). A batch lasts about ``batch_seconds`` (its size is
    calibrated once per contender), so the timer's own cost is negligible. The ratio of the
    ``ours`` contender to another is the median over rounds of ``ours_round / other_round``:
    pairing within a round cancels the load drift that separate measurements pick up.
    """
    for contender in contenders:
        _check_role(contender.role)
    ours = [i for i, c in enumerate(contenders) if c.role == "ours"]
    if len(ours) != 1:
        raise ValueError("compare needs exactly one contender with role='ours'")
    sizes = []
    for contender in contenders:
        _timed_batch(contender, 3, loop)  # warm up: connections, caches, script loading
        per_call = _timed_batch(contender, 10, loop)
        sizes.append(max(1, min(100_000, round(batch_seconds / max(per_call, 1e-9)))))
    samples: list[list[float]] = [[] for _ in contenders]
    started = time.perf_counter()
    rounds = 0
    order = list(range(len(contenders)))
    while rounds < min_rounds or time.perf_counter() - started < budget_seconds:
        shift = rounds % len(order)
        for index in order[shift:] + order[:shift]:
            samples[index].append(_timed_batch(contenders[index], sizes[index], loop))
        rounds += 1
    mine = samples[ours[0]]
    rows = []
    for contender, times, size in zip(contenders, samples, sizes, strict=True):
        row: dict[str, Any] = {
            "role": contender.role,
            "label": contender.label,
            "median": statistics.median(times),
            "rounds": rounds,
            "batch": size,
        }
        if contender.role != "ours":
            row["ratio"] = statistics.median(a / b for a, b in zip(mine, times, strict=True))
        if contender.goal is not None:
            row["goal"] = contender.goal
        rows.append(row)
    return rows


@pytest.fixture
def compare(benchmark: Any) -> Any:
    """``compare(group, contenders, loop=None, budget_seconds=2.0)``: an interleaved group.

    ``contenders`` is a list of :class:`Contender` with exactly one ``"ours"``; goals go on the
    peer/floor rows as with ``mark``. The whole interleaved run is one pytest-benchmark entry whose
    ``extra_info["compare"]`` holds a row per contender; ``report.py`` expands it into the group's
    table, with the paired ratios.
    """

    def _compare(
        group: str,
        contenders: Sequence[Contender],
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        budget_seconds: float = 2.0,
    ) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = []

        def measure() -> None:
            result[:] = run_interleaved(contenders, loop=loop, budget_seconds=budget_seconds)

        benchmark.group = group
        benchmark.pedantic(measure, rounds=1, iterations=1)
        benchmark.extra_info.update(role="compare", label=group, compare=result)
        return result

    return _compare
