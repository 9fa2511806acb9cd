-- Lock release: delete the lock if the caller's owner secret holds it, and wake the head of
-- the queue. A port of dsprims.locks.core.decide_release.
-- KEYS[1]: lock hash. KEYS[3]: waiter queue. KEYS[4]: waiter expiry (KEYS[2] unused, passed
-- so that every lock script names the same keys).
-- ARGV[1]: owner secret. ARGV[2]: now in µs ('' = server TIME). ARGV[3]: wake-list key prefix.
-- ARGV[4]: extra key lifetime in ms (see lock_acquire.lua).
-- Returns {released 0/1, woken ticket or ''}.
local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local h = redis.call('HMGET', KEYS[1], 'o', 'd')
if not h[1] or h[1] ~= ARGV[1] or tonumber(h[2]) <= now then
  return {0, ''}
end
redis.call('DEL', KEYS[1])
local dead = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)
for _, ticket in ipairs(dead) do
  redis.call('ZREM', KEYS[3], ticket)
  redis.call('ZREM', KEYS[4], ticket)
  redis.call('DEL', ARGV[3] .. ticket)
end
local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
if not head then
  return {1, ''}
end
local key = ARGV[3] .. head
if redis.call('LLEN', key) == 0 then
  redis.call('LPUSH', key, '1')
end
local e = tonumber(redis.call('ZSCORE', KEYS[4], head))
redis.call('PEXPIRE', key, math.max(1, math.ceil((e - now) / 1000)) + tonumber(ARGV[4]))
return {1, head}
