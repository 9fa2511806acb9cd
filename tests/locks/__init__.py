"""Tests of dsprims.locks."""

from typing import Any

from dsprims import StaleTokenError

#: The fields an idle Redis lock hash keeps on purpose: the fencing counter (f) and the lower
#: bound of its key's expiry (x). Anything more (holder, token, deadline, the waiters mark w)
#: is a leftover.
IDLE_FIELDS = [b"f", b"x"]


def write_outcome(store: Any, key: str, value: str | bytes, token: int) -> str:
    """``"ok"`` or ``"stale"``: what a fenced ``store.write`` did (for differential tests)."""
    try:
        store.write(key, value, token)
    except StaleTokenError:
        return "stale"
    return "ok"
