-- A waiter gives up (timeout, error, cancellation): drop its ticket, end a lease of its owner
-- secret that raced with the give-up (a grant whose reply was lost, or a hand-off that
-- reached it as it gave up), and if the lock is free hand it to the new head (fair mode) or
-- wake it, so nothing stays held by a waiter that left.
-- Port of dsprims.locks.core.decide_leave. Keys (and the w mark) as in lock_acquire.lua.
-- KEYS[1]: lock hash. KEYS[2]: waiter queue. KEYS[3]: waiter expiry.
-- ARGV[1]: ticket ('' = none). ARGV[2]: owner secret ('' = none). ARGV[3]: now in µs
-- ('' = server TIME). ARGV[4]: extra key lifetime in ms.
-- ARGV[5]: '1' to push a token onto the caller's own wake list (so that a BLPOP of that list
-- still in flight returns at once), '0' to delete the list.
-- ARGV[6] (optional): '1' to hand a free lock to a head that queued in fair mode (see
-- lock_release.lua); absent (Redlock, fair=False) only to wake it.
-- Returns the woken ticket or ''.
--#include lock_common
local now = script_now(ARGV[3])
local base = string.sub(KEYS[1], 1, -5)
local slack = tonumber(ARGV[4])
local ticket = ARGV[1]
if ticket ~= '' then
  redis.call('ZREM', KEYS[2], ticket)
  redis.call('ZREM', KEYS[3], ticket)
  redis.call('HDEL', base .. 'qo', ticket)
  if ARGV[5] == '1' then
    redis.call('LPUSH', base .. 'wake:' .. ticket, '0')
    redis.call('PEXPIRE', base .. 'wake:' .. ticket, 1000 + slack)
  else
    redis.call('DEL', base .. 'wake:' .. ticket)
  end
end
local h = redis.call('HMGET', KEYS[1], 'o', 'd')
local owner = h[1]
if owner and tonumber(h[2]) <= now then
  owner = false
end
if owner and ARGV[2] ~= '' and owner == ARGV[2] then
  redis.call('HDEL', KEYS[1], 'o', 't', 'd')
  owner = false
end
if owner then
  return ''
end
local head = live_head(base, KEYS[2], KEYS[3], now)
if not head then
  -- The queue is empty: drop its mark (see lock_acquire.lua).
  redis.call('HDEL', KEYS[1], 'w')
  return ''
end
free_for_head(KEYS[1], base, KEYS[2], KEYS[3], head, now, slack, ARGV[6])
return head
