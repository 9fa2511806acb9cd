"""The one exception tree of dsprims.

Every error the library raises on purpose derives from :class:`DsprimsError`, so a service can
catch everything dsprims says with one clause. Driver exceptions (redis-py, kazoo) never escape
bare: backends translate them at their boundary and chain the original (``raise ... from exc``).

::

    DsprimsError
    ├── ConfigurationError (also ValueError)   bad parameters, rejected at construction
    ├── BackendError                           the store answered with an error
    │   └── BackendUnavailable                 the store cannot be reached in time
    ├── RateLimitExceeded                      acquire() timed out waiting for capacity
    ├── CircuitOpenError                       the breaker rejected the call
    ├── ClockSkewError                         a remote timestamp is too far ahead
    └── LockError
        ├── LockNotAcquired                    acquire() timed out
        ├── LockNotOwned                       release/extend by a caller that holds no lease
        ├── LockLost                           the lease expired or its session ended
        └── StaleTokenError                    a fenced write carried an outdated token
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "CircuitOpenError",
    "ClockSkewError",
    "ConfigurationError",
    "DsprimsError",
    "LockError",
    "LockLost",
    "LockNotAcquired",
    "LockNotOwned",
    "RateLimitExceeded",
    "StaleTokenError",
]


class DsprimsError(Exception):
    """Root of every exception dsprims raises on purpose."""


class ConfigurationError(DsprimsError, ValueError):
    """A parameter is out of range or of the wrong kind; the message names it."""


class BackendError(DsprimsError):
    """The backing store (Redis, ZooKeeper) answered with an error."""


class BackendUnavailable(BackendError):
    """The backing store could not be reached, or did not answer within the timeout."""


class RateLimitExceeded(DsprimsError):
    """A waiting ``acquire`` could not be admitted before its timeout.

    Attributes:
        decision: the last decision seen (a ``RateLimitDecision``), if any.
    """

    def __init__(self, message: str, decision: Any = None) -> None:
        super().__init__(message)
        self.decision = decision


class CircuitOpenError(DsprimsError):
    """The circuit breaker rejected a call.

    Attributes:
        name: the breaker's name.
        retry_after: seconds until the breaker lets a trial call through (0.0 if unknown).
    """

    # Construction stays in C (``BaseException`` keeps ``args``) and the message is formatted
    # on demand: rejection is the hot path of an open breaker, and most rejections are caught
    # without ever being printed.
    if TYPE_CHECKING:

        def __init__(self, name: str, retry_after: float) -> None: ...

    @property
    def name(self) -> str:
        """The breaker's name."""
        return self.args[0]  # type: ignore[no-any-return]

    @property
    def retry_after(self) -> float:
        """Seconds until the breaker lets a trial call through (0.0 if unknown)."""
        return self.args[1]  # type: ignore[no-any-return]

    def __str__(self) -> str:
        return f"circuit {self.args[0]!r} is open; retry after {self.args[1]:.3f}s"


class ClockSkewError(DsprimsError):
    """A remote timestamp is further ahead of the local physical clock than allowed."""


class LockError(DsprimsError):
    """Base of lock and fencing errors."""


class LockNotAcquired(LockError):
    """``acquire`` gave up because its timeout passed."""


class LockNotOwned(LockError):
    """The caller tried to release or extend a lock it does not hold."""


class LockLost(LockError):
    """The lease is no longer valid: it expired, was taken over, or its session ended."""


class StaleTokenError(LockError):
    """A fenced write carried a token lower than one the resource already accepted."""
