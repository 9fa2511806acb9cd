-- Lock acquisition: grant the lock with a fencing token, or queue the caller (FIFO).
-- A port of dsprims.locks.core.decide_acquire; the differential tests pin the two together.
-- KEYS[1]: lock hash (o = owner secret, t = token, d = lease deadline in µs).
-- KEYS[2]: fencing counter (string, the highest token issued; kept ARGV[10] ms after a grant).
-- KEYS[3]: waiter queue (sorted set ticket -> arrival time in µs).
-- KEYS[4]: waiter expiry (sorted set ticket -> expiry time in µs).
-- ARGV[1]: owner secret. ARGV[2]: ticket ('' = do not queue). ARGV[3]: lease length in µs.
-- ARGV[4]: now in µs since the epoch ('' = read the server's TIME).
-- ARGV[5]: '1' fair (a free lock goes to the head of the queue) or '0' (barging allowed).
-- ARGV[6]: waiter entry lifetime in µs. ARGV[7]: key prefix of the per-ticket wake-up lists.
-- ARGV[8]: fencing mode, 'clock' (token = max(counter + 1, now)) or 'counter'.
-- ARGV[9]: extra key lifetime in ms added to every PEXPIRE (non-zero only when the caller pins
--          time, so that Redis' real-time expiry never drops state the pinned clock still needs).
-- ARGV[10]: fencing counter lifetime in ms.
-- Returns {granted 0/1, token, wait µs (-1: wait to be woken), woken ticket or ''}.
-- Numbers stay below 2^53 (µs since the epoch), so Lua doubles hold them exactly; they are
-- written back with %d, never with tostring (which would round to 14 digits).
local now
if ARGV[4] ~= '' then
  now = tonumber(ARGV[4])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local slack = tonumber(ARGV[9])
local wake_prefix = ARGV[7]

local function wake(ticket)
  local key = wake_prefix .. ticket
  if redis.call('LLEN', key) == 0 then
    redis.call('LPUSH', key, '1')
  end
  local e = tonumber(redis.call('ZSCORE', KEYS[4], ticket) or now)
  redis.call('PEXPIRE', key, math.max(1, math.ceil((e - now) / 1000)) + slack)
end

local h = redis.call('HMGET', KEYS[1], 'o', 't', 'd')
local owner, token = h[1], h[2]
if owner and tonumber(h[3]) <= now then
  redis.call('DEL', KEYS[1])
  owner = false
end
local dead = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)
for _, ticket in ipairs(dead) do
  redis.call('ZREM', KEYS[3], ticket)
  redis.call('ZREM', KEYS[4], ticket)
  redis.call('DEL', wake_prefix .. ticket)
end

local me, ticket, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ttl_ms = math.ceil(ttl / 1000) + slack
if owner == me then
  redis.call('HSET', KEYS[1], 'd', string.format('%d', now + ttl))
  redis.call('PEXPIRE', KEYS[1], ttl_ms)
  return {1, tonumber(token), 0, ''}
end

local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
if not owner and (ARGV[5] ~= '1' or not head or head == ticket) then
  local fence = tonumber(redis.call('GET', KEYS[2]) or '0')
  local tok = fence + 1
  if ARGV[8] == 'clock' and now > tok then
    tok = now
  end
  local stok = string.format('%d', tok)
  redis.call('SET', KEYS[2], stok, 'PX', tonumber(ARGV[10]) + slack)
  redis.call('HSET', KEYS[1], 'o', me, 't', stok, 'd', string.format('%d', now + ttl))
  redis.call('PEXPIRE', KEYS[1], ttl_ms)
  if ticket ~= '' then
    redis.call('ZREM', KEYS[3], ticket)
    redis.call('ZREM', KEYS[4], ticket)
    redis.call('DEL', wake_prefix .. ticket)
  end
  return {1, tok, 0, ''}
end

if ticket ~= '' then
  local wttl = tonumber(ARGV[6])
  if not redis.call('ZSCORE', KEYS[3], ticket) then
    redis.call('ZADD', KEYS[3], string.format('%d', now), ticket)
  end
  redis.call('ZADD', KEYS[4], string.format('%d', now + wttl), ticket)
  local keep = math.ceil(wttl / 1000) + slack
  for i = 3, 4 do
    if redis.call('PTTL', KEYS[i]) < keep then
      redis.call('PEXPIRE', KEYS[i], keep)
    end
  end
end
if not owner then
  -- Free but promised to the head: make sure the head knows.
  wake(head)
  return {0, 0, -1, head}
end
return {0, 0, tonumber(h[3]) - now, ''}
