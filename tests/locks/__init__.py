"""Tests of dsprims.locks."""

import asyncio
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


async def hand_over(lock: Any, *, wait: float = 5.0) -> None:
    """A holder and a queued waiter on an asyncio ``lock``: releasing hands the lock to the
    waiter, whose token is larger; both leases end released."""
    holder = await lock.acquire()
    waiter = asyncio.ensure_future(lock.acquire(timeout=wait))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await holder.release()
    lease = await waiter
    assert lease.token > holder.token
    await lease.release()
