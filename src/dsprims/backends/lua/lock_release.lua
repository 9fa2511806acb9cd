-- Lock release: end the lease if the caller's owner secret holds it, then hand the lock to
-- the head of the queue (fair mode) or wake it. A port of dsprims.locks.core.decide_release.
-- KEYS[1]: lock hash; the queue keys are derived from it as in lock_acquire.lua, which also
-- explains the w field (the queue is read only when it may be non-empty).
-- ARGV[1]: owner secret. ARGV[2]: "<extra key lifetime ms> <handoff 1|0>[ <now µs>]" (see
-- lock_acquire.lua; without now, the server's TIME is read). With handoff '1' a head that
-- queued in fair mode is granted the lock here and finds "g<token>" in its wake-up list (see
-- lock_common.lua); Redlock and fair=False locks pass '0' and only wake the head.
-- Returns 1 when released, 0 when the lock was not held by this owner.
--#include lock_common
local slack, handoff, now = string.match(ARGV[2], '^(%d+) (%d) ?(%d*)$')
now = script_now(now)
local h = redis.call('HMGET', KEYS[1], 'o', 'd', 'w')
if not h[1] or h[1] ~= ARGV[1] or tonumber(h[2]) <= now then
  return 0
end
-- The fencing counter (f) and the expiry stamp (x) stay.
if not h[3] then
  redis.call('HDEL', KEYS[1], 'o', 't', 'd')
  return 1
end
local base = string.sub(KEYS[1], 1, -5)
local qkey = base .. 'q'
local xkey = qkey .. 'x'
local head = live_head(base, qkey, xkey, now)
if not head then
  -- The queue is empty: the w mark goes with the lease.
  redis.call('HDEL', KEYS[1], 'o', 't', 'd', 'w')
  return 1
end
redis.call('HDEL', KEYS[1], 'o', 't', 'd')
free_for_head(KEYS[1], base, qkey, xkey, head, now, tonumber(slack), handoff)
return 1
