"""The answer of every rate limiter: :class:`RateLimitDecision`, and its HTTP header fields.

Header semantics follow the IETF HTTPAPI working group's draft "RateLimit header fields for HTTP"
(draft-ietf-httpapi-ratelimit-headers, the ``RateLimit-Limit`` / ``RateLimit-Remaining`` /
``RateLimit-Reset`` form of revisions 00-06) and RFC 9110 section 10.2.3 for ``Retry-After``:
all durations are whole *delta-seconds*, rounded up so a client that waits the advertised time
is never early.
"""

from __future__ import annotations

import math
from typing import NamedTuple

__all__ = ["RateLimitDecision", "decision_from_verdict"]


class RateLimitDecision(NamedTuple):
    """The outcome of one rate-limit decision (immutable).

    A ``NamedTuple`` rather than a frozen dataclass: it is built on every call of the hottest
    path in the library, and a tuple is about three times cheaper to create.

    Attributes:
        allowed: whether the request was admitted (and its cost consumed).
        remaining: whole units still admissible right now (after this request, if admitted).
        retry_after: 0.0 when allowed; otherwise seconds until the same cost would be admitted.
            Waiting exactly this long and retrying the same cost is admitted, unless others
            consumed in between (it is the exact wait in whole microseconds plus one microsecond,
            so that float seconds on any clock land on or after the admitting instant).
        reset_after: seconds until the limiter is back to its full, unused state for this key.
        limit: the limit in force (the bucket capacity or the per-window limit).
        degraded: ``True`` when the backend was unreachable and the decision was made by the
            outage policy (fail open, or the local fallback limiter) instead of the shared store.
    """

    allowed: bool
    remaining: int
    retry_after: float
    reset_after: float
    limit: int
    degraded: bool = False

    def headers(self) -> dict[str, str]:
        """The HTTP response header fields for this decision.

        Returns:
            ``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset`` (whole seconds
            until the quota is fully restored, rounded up), plus ``Retry-After`` (whole seconds,
            rounded up, at least 1) when the request was denied.
        """
        fields = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(max(0, self.remaining)),
            "RateLimit-Reset": str(math.ceil(self.reset_after)),
        }
        if not self.allowed:
            fields["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        return fields


def decision_from_verdict(
    allowed: bool | int, remaining: int, retry_us: int, reset_us: int, limit: int
) -> RateLimitDecision:
    """Convert a core verdict (integer µs) into a decision (float seconds)."""
    # tuple.__new__ skips the NamedTuple's Python-level __new__: half the cost of a decision.
    if allowed:
        return _make(RateLimitDecision, (True, remaining, 0.0, reset_us / 1e6, limit, False))
    return _make(
        RateLimitDecision, (False, remaining, (retry_us + 1) / 1e6, reset_us / 1e6, limit, False)
    )


_make = tuple.__new__
