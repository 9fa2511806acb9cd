-- Lock extension: move the lease deadline to now + ttl if the caller's owner secret still
-- holds the lock. Never re-creates an expired, released or vanished lock. Port of
-- dsprims.locks.core.decide_extend.
-- KEYS[1]: lock hash (see lock_acquire.lua).
-- ARGV[1]: owner secret. ARGV[2]: new lease length in µs. ARGV[3]: now in µs ('' = TIME).
-- ARGV[4]: extra key lifetime in ms (see lock_acquire.lua).
-- Returns 1 when extended, 0 when the lock is not held by this owner any more.
--#include lock_common
local now = script_now(ARGV[3])
local h = redis.call('HMGET', KEYS[1], 'o', 'd')
if not h[1] or h[1] ~= ARGV[1] or tonumber(h[2]) <= now then
  return 0
end
local ttl = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'd', string.format('%d', now + ttl))
local keep = math.ceil(ttl / 1000) + tonumber(ARGV[4])
if redis.call('PTTL', KEYS[1]) < keep then
  redis.call('PEXPIRE', KEYS[1], keep)
end
return 1
