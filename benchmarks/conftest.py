"""Benchmark conventions (read by ``benchmarks/report.py``).

Each benchmark sets ``benchmark.group`` to ``"<primitive>: <operation>"`` and
``benchmark.extra_info`` with:

* ``role``: ``"ours"``, ``"peer"`` or ``"floor"`` (the physical lower bound, e.g. one round trip);
* ``label``: what was measured (``"dsprims"``, ``"uhashring 2.5"``, ``"bare EVALSHA"``…);
* ``goal`` (optional, on a peer or floor row): the largest acceptable ``ours / this`` ratio.

The report divides the mean of the group's ``ours`` row by every other row's mean. Benchmarks
never assert on time: machines are shared and noisy; the goals are read by people.
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def mark(benchmark: Any) -> Any:
    """``mark(group, role, label, goal=None)`` labels the benchmark for the report."""

    def _mark(group: str, role: str, label: str, goal: float | None = None) -> Any:
        if role not in ("ours", "peer", "floor"):
            raise ValueError(f"role must be ours, peer or floor, got {role!r}")
        benchmark.group = group
        benchmark.extra_info.update(role=role, label=label)
        if goal is not None:
            benchmark.extra_info["goal"] = goal
        return benchmark

    return _mark
