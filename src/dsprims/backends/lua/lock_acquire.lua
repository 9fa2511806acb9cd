-- Lock acquisition: grant the lock with a fencing token, or queue the caller (FIFO).
-- A port of dsprims.locks.core.decide_acquire; the differential tests pin the two together.
-- KEYS[1]: lock hash "<prefix>:{<name>}:lock": o = owner secret, t = token, d = lease deadline
--          (µs), f = highest token issued, x = a lower bound (µs) of the key's own expiry,
--          w = present when the waiter queue may be non-empty. The hash outlives the lease
--          (f must survive), so the lease is live only while d > now.
--          Invariant: whenever the queue holds a ticket, w is set (only this script queues, and
--          it sets w first), so a hash without w proves an empty queue and the uncontended path
--          skips the queue keys. A stale w (the queue emptied by expiry) costs one ZRANGE and is
--          cleared by the next script that finds the queue empty.
--          x saves a PEXPIRE per grant: the key is re-armed for 1.5 times its needed lifetime
--          only when x says it might expire earlier than needed (x never overstates the expiry).
-- The other keys are derived from KEYS[1] (same hash tag, so the same cluster slot), like the
-- wake-up lists: one declared key is one argument less to encode on the hot path.
--   "<prefix>:{<name>}:q": waiter queue (sorted set ticket -> arrival µs).
--   "<prefix>:{<name>}:qx": waiter expiry (sorted set ticket -> expiry µs).
--   "<prefix>:{<name>}:qo": hand-off settings of the waiters that queued in fair mode (hash
--          ticket -> "<lease µs> <clock|counter> <fence lifetime ms> <owner secret>"), read by
--          a release that hands the lock directly to the head (see lock_common.lua).
--   "<prefix>:{<name>}:wake:<ticket>": per-ticket wake-up lists: '1' (the lock is free, ask
--          again), '0' (the waiter unblocks itself, see lock_leave.lua) or "g<token>" (the lock
--          was handed to this waiter with that token).
-- ARGV[1]: owner secret. ARGV[2]: ticket ('' = do not queue).
-- ARGV[3]: "<lease µs> <fair 1|0> <waiter entry lifetime µs> <clock|counter> <slack ms>
--          <fence lifetime ms>[ <now µs>]", where slack is added to every PEXPIRE (non-zero only
--          when the caller pins time, so that Redis' real-time expiry never drops state the
--          pinned clock still needs; x is then not trusted and every grant re-arms the key),
--          "clock" floors tokens by now, and now (µs since the epoch) is given only by a caller
--          that pins time (else the server's TIME is read).
-- Returns the token (an integer) when granted, else {wait µs (-1: wait to be woken), woken
-- ticket or ''}: a bare integer is the cheapest reply to parse on the hot path. A fair caller
-- with a ticket that is not granted leaves its grant settings in "...:qo" for a hand-off.
-- Numbers stay below 2^53 (µs since the epoch), so Lua doubles hold them exactly; they are
-- handed to redis.call as numbers, which Redis formats with 17 significant digits (exact for
-- integers below 2^53; cheaper than string.format), never with tostring (14 digits).
--#include lock_common
local ttl_s, fair, wttl, mode, slack, fence_s, now =
  string.match(ARGV[3], '^(%d+) (%d) (%d+) (%a+) (%d+) (%d+) ?(%d*)$')
now = script_now(now)
local ttl, fence_ms = tonumber(ttl_s), tonumber(fence_s)
wttl, slack = tonumber(wttl), tonumber(slack)
-- The derived key names are built only on the paths that touch the queue.
local base, qkey, xkey

local h = redis.call('HMGET', KEYS[1], 'o', 't', 'd', 'f', 'w', 'x')
local owner, token, deadline = h[1], h[2], tonumber(h[3] or '0')
if owner and deadline <= now then
  owner = false
end
local me, ticket = ARGV[1], ARGV[2]
if owner == me then
  redis.call('HSET', KEYS[1], 'd', now + ttl)
  if ticket ~= '' then
    -- Asking again after a hand-off (its wake-up came late): the message is moot.
    redis.call('DEL', string.sub(KEYS[1], 1, -5) .. 'wake:' .. ticket)
  end
  return tonumber(token)
end

-- Only a queue that may be non-empty needs reading and pruning.
local marked = h[5]
local head = false
if marked then
  base = string.sub(KEYS[1], 1, -5)
  qkey, xkey = base .. 'q', base .. 'qx'
  head = live_head(base, qkey, xkey, now)
end

if not owner and (fair ~= '1' or not head or head == ticket) then
  local tok = grant(KEYS[1], h[4], h[6], me, ttl, mode, fence_ms, slack, now)
  if head and ticket ~= '' then
    drop_ticket(base, qkey, xkey, ticket)
    head = redis.call('ZRANGE', qkey, 0, 0)[1]
  end
  if marked and not head then
    redis.call('HDEL', KEYS[1], 'w')
  end
  return tok
end

if not base then
  base = string.sub(KEYS[1], 1, -5)
  qkey, xkey = base .. 'q', base .. 'qx'
end
if ticket ~= '' then
  -- This attempt saw the current state: what its wake-up list held (a wake-up, or a hand-off
  -- that is gone again) is moot; it blocks only for what is sent from now on. This is also
  -- what makes a hand-off the waiter pops safe to count from just before this attempt: it
  -- was made after the attempt ran (an older one would be a grant already lost).
  redis.call('DEL', base .. 'wake:' .. ticket)
  if not marked then
    -- Mark before queueing (see the invariant above); the hash may have to be created.
    redis.call('HSET', KEYS[1], 'w', '1')
  end
  if not redis.call('ZSCORE', qkey, ticket) then
    redis.call('ZADD', qkey, now, ticket)
  end
  redis.call('ZADD', xkey, now + wttl, ticket)
  local keep = math.ceil(wttl / 1000) + slack
  -- A hash without a fencing counter may have just been made by the HSET above.
  local keys = h[4] and {qkey, xkey} or {qkey, xkey, KEYS[1]}
  if fair == '1' then
    local okey = base .. 'qo'
    redis.call('HSET', okey, ticket, ttl_s .. ' ' .. mode .. ' ' .. fence_s .. ' ' .. me)
    keys[#keys + 1] = okey
  end
  for _, k in ipairs(keys) do
    if redis.call('PTTL', k) < keep then
      redis.call('PEXPIRE', k, keep)
    end
  end
end
if not owner then
  -- Free but promised to the head: make sure the head knows.
  wake_head(base, xkey, head, now, slack)
  return {-1, head}
end
return {deadline - now, ''}
