-- Helpers shared by the lock scripts, spliced in where a script says "--#include lock_common"
-- (dsprims.backends._lua does it when it loads the script, before hashing it).
-- Key layout, the w mark and the x stamp: see lock_acquire.lua.

-- The script's time in µs since the epoch: `given` when the caller pins time, else the
-- server's TIME.
local function script_now(given)
  if given ~= '' then
    return tonumber(given)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Forget one waiter's ticket: its queue entry, its expiry and its wake-up list.
local function drop_ticket(base, qkey, xkey, ticket)
  redis.call('ZREM', qkey, ticket)
  redis.call('ZREM', xkey, ticket)
  redis.call('DEL', base .. 'wake:' .. ticket)
end

-- The first live ticket of the queue (or nil), after dropping the waiters whose entries expired.
local function live_head(base, qkey, xkey, now)
  local head = redis.call('ZRANGE', qkey, 0, 0)[1]
  if head then
    local dead = redis.call('ZRANGEBYSCORE', xkey, '-inf', now)
    for _, t in ipairs(dead) do
      drop_ticket(base, qkey, xkey, t)
    end
    if #dead > 0 then
      head = redis.call('ZRANGE', qkey, 0, 0)[1]
    end
  end
  return head
end

-- Tell the head of the queue that the lock is free: one token in its wake-up list (kept no
-- longer than its waiter entry lives, plus slack ms).
local function wake_head(base, xkey, head, now, slack)
  local key = base .. 'wake:' .. head
  if redis.call('LLEN', key) == 0 then
    redis.call('LPUSH', key, '1')
  end
  local e = tonumber(redis.call('ZSCORE', xkey, head) or now)
  redis.call('PEXPIRE', key, math.max(1, math.ceil((e - now) / 1000)) + slack)
end
