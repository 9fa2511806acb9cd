"""Golden vectors for the rate-limit cores, shared by the Python core and the Lua port.

Each vector is ``(algo, params, steps)``; a step is ``(offset_us, cost, consume, expected)``
where the decision is taken at ``BASE_US + offset_us`` and ``expected`` is the verdict
``(allowed, remaining, retry_after_us, reset_after_us)``. The expected values were worked out
by hand from the definitions in ``dsprims.ratelimit.core`` (the arithmetic is in the comments),
not produced by the code under test.
"""

from __future__ import annotations

from typing import Any

BASE_US = 1_000_000_000  # 1000 s, where the manual_clock fixture starts

Step = tuple[int, int, bool, tuple[int, int, int, int]]

VECTORS: list[tuple[str, dict[str, Any], list[Step]]] = [
    (
        "token_bucket",
        {"rate": 10, "capacity": 3},  # T = 100_000 us, tau = 300_000 us
        [
            (0, 1, True, (1, 2, 0, 100_000)),  # tat = +100k; (tau - 100k) // T = 2
            (0, 2, True, (1, 0, 0, 300_000)),  # tat = +300k; allow_at = 0
            (0, 1, True, (0, 0, 100_000, 300_000)),  # allow_at = +100k
            (100_000, 1, True, (1, 0, 0, 300_000)),  # exactly retry_after later: admitted
            (150_000, 1, False, (0, 0, 50_000, 250_000)),  # peek: allow_at = +200k
            (1_000_000, 3, True, (1, 0, 0, 300_000)),  # full again after idling
            (1_000_000, 0, True, (1, 0, 0, 300_000)),  # cost 0 always admitted
        ],
    ),
    (
        "counter",
        {"limit": 4, "window": 1.0},  # W = 1e6 us; BASE_US is a window start
        [
            (0, 3, True, (1, 1, 0, 2_000_000)),
            # 3W + 2W > 4W; spare < 0, so wait for the next window:
            # at = start + 2W - (2W // 3) = +1_333_334; retry = 1_333_334 - 500_000
            (500_000, 2, True, (0, 1, 833_334, 1_500_000)),
            # previous = 3, elapsed = 333_334: 3 * 666_666 + 2W = 3_999_998 <= 4W
            (1_333_334, 2, True, (1, 0, 0, 1_666_666)),
            # spare = 1: at = +1e6 + W - (W // 3) = +1_666_667
            (1_333_334, 1, True, (0, 0, 333_333, 1_666_666)),
            (1_666_667, 1, False, (1, 1, 0, 1_333_333)),  # peek at the predicted instant
            (5_000_000, 4, True, (1, 0, 0, 2_000_000)),  # both windows stale
        ],
    ),
    (
        "log",
        {"limit": 3, "window": 1.0},
        [
            (0, 2, True, (1, 1, 0, 1_000_000)),
            (400_000, 1, True, (1, 0, 0, 1_000_000)),
            # need 1: the entry at 0 frees 2 at +1e6; reset = 400k + 1e6 - 500k
            (500_000, 1, True, (0, 0, 500_000, 900_000)),
            (1_000_000, 2, True, (1, 0, 0, 1_000_000)),  # the entry at 0 left the window
            (1_000_000, 1, False, (0, 0, 400_000, 1_000_000)),  # frees at 400k + 1e6
            (1_000_000, 3, True, (0, 0, 1_000_000, 1_000_000)),  # needs both entries gone
            # the clock stepped back: decided at +1e6, durations from +900k
            (900_000, 0, True, (1, 0, 0, 1_100_000)),
        ],
    ),
]
