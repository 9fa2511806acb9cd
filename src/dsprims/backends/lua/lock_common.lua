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

-- Forget one waiter's ticket: its queue entry, its expiry, its hand-off settings and its
-- wake-up list.
local function drop_ticket(base, qkey, xkey, ticket)
  redis.call('ZREM', qkey, ticket)
  redis.call('ZREM', xkey, ticket)
  redis.call('HDEL', base .. 'qo', ticket)
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

-- Grant the lock (hash `key`, whose f and x fields were read as `fence` and `stamp`) to the
-- owner secret `me` for `ttl` µs from `now`, with the next fencing token ('clock' mode floors
-- it by now). The key must outlive the lease and keep the counter for `fence_ms`: it is
-- re-armed for 1.5 times that only when x says it might expire earlier (x never overstates
-- the expiry: Redis counts a PEXPIRE from its own millisecond snapshot taken when the script
-- started, and the stamp leaves a second for that and for the truncation), so most grants
-- skip the PEXPIRE. With slack (a pinned clock) x is not trusted and every grant re-arms.
-- Returns the token.
local function grant(key, fence, stamp, me, ttl, mode, fence_ms, slack, now)
  local tok = tonumber(fence or '0') + 1
  if mode == 'clock' and now > tok then
    tok = now
  end
  local keep = math.max(fence_ms, math.ceil(ttl / 1000)) + slack
  if slack > 0 or tonumber(stamp or '0') < now + keep * 1000 then
    local arm = keep + math.floor(keep / 2)
    redis.call('HSET', key, 'o', me, 't', tok, 'd', now + ttl, 'f', tok, 'x',
      now + (arm - 1000) * 1000)
    redis.call('PEXPIRE', key, arm)
  else
    redis.call('HSET', key, 'o', me, 't', tok, 'd', now + ttl, 'f', tok)
  end
  return tok
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

-- The lock (hash `key`) is free and `head` is the live head of the queue. When `handoff` is '1' and the head queued in fair mode (its grant
-- settings "<lease µs> <clock|counter> <fence lifetime ms> <owner secret>" are in the
-- "...:qo" hash), grant the lock to it directly: drop its ticket, and push
-- "g<token> <lease µs>" as the only entry of its wake-up list, so its BLPOP returns holding
-- the lock. The lease is the head's own, cut to what is left of its queue entry's lifetime
-- (so a waiter that died in the queue holds the lock no longer than its entry would have
-- blocked the queue). Otherwise wake it. Port of dsprims.locks.core._free.
-- Returns the token handed over, or 0 for a wake-up.
local function free_for_head(key, base, qkey, xkey, head, now, slack, handoff)
  local info = handoff == '1' and redis.call('HGET', base .. 'qo', head)
  if not info then
    wake_head(base, xkey, head, now, slack)
    return 0
  end
  local ttl, mode, fence_ms, owner = string.match(info, '^(%d+) (%a+) (%d+) (.+)$')
  -- The head is live (live_head dropped expired entries), so its entry expires after now.
  local e = tonumber(redis.call('ZSCORE', xkey, head))
  local lease = math.min(tonumber(ttl), e - now)
  local fx = redis.call('HMGET', key, 'f', 'x')
  local tok = grant(key, fx[1], fx[2], owner, lease, mode, tonumber(fence_ms), slack, now)
  drop_ticket(base, qkey, xkey, head)
  local list = base .. 'wake:' .. head
  redis.call('LPUSH', list, string.format('g%d %d', tok, lease))
  -- The message lives as long as the waiter's queue entry would have.
  redis.call('PEXPIRE', list, math.max(1, math.ceil((e - now) / 1000)) + slack)
  if not redis.call('ZRANGE', qkey, 0, 0)[1] then
    -- Nobody else waits: the w mark goes (see lock_acquire.lua).
    redis.call('HDEL', key, 'w')
  end
  return tok
end
