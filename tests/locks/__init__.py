"""Tests of dsprims.locks."""

#: The fields an idle Redis lock hash keeps on purpose: the fencing counter (f) and the lower
#: bound of its key's expiry (x). Anything more (holder, token, deadline, the waiters mark w)
#: is a leftover.
IDLE_FIELDS = [b"f", b"x"]
