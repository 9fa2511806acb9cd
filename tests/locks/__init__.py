"""Tests of dsprims.locks."""

from typing import Any

from dsprims import StaleTokenError

#: The fields an idle Redis lock hash keeps on purpose: the fencing counter (f) and the lower
#: bound of its key's expiry (x). Anything more (holder, token, deadline, the waiters mark w)
#: is a leftover.
IDLE_FIELDS = [b"f", b"x"]


def leftover_keys(client: Any, prefix: str) -> list[bytes]:
    """Keys under ``prefix`` that hold lock state beyond the fencing counter (which a lock keeps
    on purpose): holders, queues, wake-up lists."""
    keys = []
    for key in client.scan_iter(match=f"{prefix}*"):
        if key.endswith(b":lock") and sorted(client.hkeys(key)) == IDLE_FIELDS:
            continue
        keys.append(key)
    return sorted(keys)


def write_outcome(store: Any, key: str, value: str | bytes, token: int) -> str:
    """``"ok"`` or ``"stale"``: what a fenced ``store.write`` did (for differential tests)."""
    try:
        store.write(key, value, token)
    except StaleTokenError:
        return "stale"
    return "ok"
