-- Lock release: end the lease if the caller's owner secret holds it, and wake the head of
-- the queue. A port of dsprims.locks.core.decide_release. Keys as in lock_acquire.lua.
-- KEYS[1]: lock hash. KEYS[2]: waiter queue. KEYS[3]: waiter expiry.
-- ARGV[1]: owner secret. ARGV[2]: now in µs ('' = server TIME).
-- ARGV[3]: extra key lifetime in ms (see lock_acquire.lua).
-- Returns 1 when released, 0 when the lock was not held by this owner.
local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local h = redis.call('HMGET', KEYS[1], 'o', 'd')
if not h[1] or h[1] ~= ARGV[1] or tonumber(h[2]) <= now then
  return 0
end
-- The fencing counter (f) stays.
redis.call('HDEL', KEYS[1], 'o', 't', 'd')
local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
if not head then
  return 1
end
local base = string.sub(KEYS[1], 1, -5)
local dead = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
for _, t in ipairs(dead) do
  redis.call('ZREM', KEYS[2], t)
  redis.call('ZREM', KEYS[3], t)
  redis.call('DEL', base .. 'wake:' .. t)
end
if #dead > 0 then
  head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if not head then
    return 1
  end
end
local key = base .. 'wake:' .. head
if redis.call('LLEN', key) == 0 then
  redis.call('LPUSH', key, '1')
end
local e = tonumber(redis.call('ZSCORE', KEYS[3], head))
redis.call('PEXPIRE', key, math.max(1, math.ceil((e - now) / 1000)) + tonumber(ARGV[3]))
return 1
