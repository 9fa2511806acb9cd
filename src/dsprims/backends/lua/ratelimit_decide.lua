-- ratelimit_decide.lua: one rate-limit decision, or one atomic decision over several limiters
-- (a composite admits only if every limiter admits; a denial consumes from none).
-- A line-by-line port of dsprims/ratelimit/core.py; tests/ratelimit/vectors.py pins both.
--
-- KEYS, per limiter in ARGV order (all in one cluster slot):
--   algo "t" (token bucket, GCRA): 1 key, a string: the theoretical arrival time (µs)
--   algo "c" (sliding-window counter): 1 key, a hash: i (window index), p, c (counts)
--   algo "l" (sliding log): 2 keys, a list of alternating time (µs), cost; a string: live total
-- ARGV[1]  now in integer µs since the epoch, or "" to read the server's TIME
-- ARGV[2]  "1" to consume, "0" to peek, "w<max_wait_us>" to reserve (one token bucket: the
--          blocking acquire books its admission instant), "r" to refund (give back `cost` consumed at ARGV[1] by an
--          earlier call: the compensation step of a composite whose keys span cluster slots)
-- ARGV[3]  grace in ms added to every TTL (for pinned clocks; 0 with server time)
-- ARGV[4]  n, the number of limiters; then 5 values per limiter: algo, p1, p2, p3, cost
--          t: interval_us, tolerance_us, capacity   c: limit, window_ticks, tick_us
--          l: limit, window_us, 0
-- Returns 4 integers per limiter: allowed (1/0), remaining, retry_after_us, reset_after_us,
-- then the time the decision was taken at (µs). A refund returns just that time.
-- Units: times and durations in µs; TTLs in ms (rounded up, +1, + grace), so a key lives at
-- least as long as its state matters.

local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local consume = ARGV[2] == '1'
local refund = ARGV[2] == 'r'
-- "w<max_wait_us>": reserve (token bucket only, one limiter).
local reserve_max = nil
if string.sub(ARGV[2], 1, 1) == 'w' then
  reserve_max = tonumber(string.sub(ARGV[2], 2))
end
local grace = tonumber(ARGV[3])
local n = tonumber(ARGV[4])

-- Exact floor division: a / b rounds in doubles, so correct the quotient by one if needed.
local function idiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

local function ttl_ms(us)
  return idiv(us + 999, 1000) + 1 + grace
end

-- A token bucket's theoretical arrival time as of now: the stored one, or now when it is gone
-- or already past.
local function gcra_base(key)
  local tat = tonumber(redis.call('GET', key))
  if tat and tat > now then
    return tat
  end
  return now
end

-- Store a token bucket's tat while it lies in the future (a past tat is the same as none).
local function gcra_store(key, tat)
  if tat > now then
    redis.call('SET', key, string.format('%d', tat), 'PX', ttl_ms(tat - now))
  end
end

-- Whole tokens left at a tat, never fewer than none (a reservation may push tat past
-- now + tolerance).
local function gcra_tokens(tat, interval, tolerance)
  local remaining = idiv(now + tolerance - tat, interval)
  if remaining < 0 then
    remaining = 0
  end
  return remaining
end

local function gcra(k, interval, tolerance, cost, write)
  local key = KEYS[k]
  local base = gcra_base(key)
  local new_tat = base + cost * interval
  local allow_at = new_tat - tolerance
  if allow_at <= now then
    if not write then
      new_tat = base
    else
      gcra_store(key, new_tat)
    end
    return {1, idiv(now + tolerance - new_tat, interval), 0, new_tat - now}
  end
  return {0, gcra_tokens(base, interval, tolerance), allow_at - now, base - now}
end

-- The blocking acquire of a token bucket: book the earliest admission instant if the wait is at
-- most max_wait (core.gcra_reserve). Returns allowed (reserved), remaining, wait_us, reset_us.
local function gcra_reserve(k, interval, tolerance, cost, max_wait)
  local key = KEYS[k]
  local base = gcra_base(key)
  local new_tat = base + cost * interval
  local wait = new_tat - tolerance - now
  if wait < 0 then
    wait = 0
  end
  if wait <= max_wait then
    gcra_store(key, new_tat)
    return {1, gcra_tokens(new_tat, interval, tolerance), wait, new_tat - now}
  end
  return {0, gcra_tokens(base, interval, tolerance), wait, base - now}
end

local function counter(k, limit, w, tick, cost, write)
  local key = KEYS[k]
  local s = redis.call('HMGET', key, 'i', 'p', 'c')
  local si = tonumber(s[1])
  local t = idiv(now, tick)
  if si and t < si * w then
    t = si * w
  end
  local index = idiv(t, w)
  local previous, current = 0, 0
  if si then
    if si == index then
      previous, current = tonumber(s[2]), tonumber(s[3])
    elseif si == index - 1 then
      previous = tonumber(s[3])
    end
  end
  local start = index * w
  local elapsed = t - start
  local weighted = previous * (w - elapsed) + current * w
  if weighted + cost * w <= limit * w then
    if write then
      current = current + cost
      weighted = weighted + cost * w
    end
    local reset = 0
    if current > 0 then
      reset = (start + 2 * w) * tick - now
    elseif previous > 0 then
      reset = (start + w) * tick - now
    end
    if write and cost > 0 then
      redis.call('HSET', key, 'i', string.format('%d', index), 'p', string.format('%d', previous),
        'c', string.format('%d', current))
      redis.call('PEXPIRE', key, ttl_ms(reset))
    end
    return {1, idiv(limit * w - weighted, w), 0, reset}
  end
  local spare = limit - current - cost
  local at
  if spare >= 0 then
    at = start + w - idiv(spare * w, previous)
  else
    at = start + 2 * w - idiv((limit - cost) * w, current)
  end
  local remaining = idiv(limit * w - weighted, w)
  if remaining < 0 then
    remaining = 0
  end
  local reset
  if current > 0 then
    reset = (start + 2 * w) * tick - now
  else
    reset = (start + w) * tick - now
  end
  return {0, remaining, at * tick - now, reset}
end

local function slog(k, limit, window, cost, write)
  local lkey, tkey = KEYS[k], KEYS[k + 1]
  local total = tonumber(redis.call('GET', tkey)) or 0
  local last = redis.call('LRANGE', lkey, -2, -1)
  local last_t, last_c
  if #last == 2 then
    last_t, last_c = tonumber(last[1]), tonumber(last[2])
  end
  local at = now
  if last_t and last_t > at then
    at = last_t
  end
  local horizon = at - window
  -- An admission at t counts during [t, t + window): drop the front entries with t <= horizon.
  -- Amortised O(1): every entry is popped once.
  local pruned = false
  local remaining_entries = last_t ~= nil
  while remaining_entries do
    local head = redis.call('LRANGE', lkey, 0, 1)
    if #head < 2 or tonumber(head[1]) > horizon then
      remaining_entries = #head == 2
      break
    end
    total = total - tonumber(head[2])
    redis.call('LPOP', lkey, 2)
    pruned = true
  end
  if pruned then
    if remaining_entries then
      redis.call('SET', tkey, string.format('%d', total), 'KEEPTTL')
    else
      redis.call('DEL', lkey, tkey)
    end
  end
  if total + cost <= limit then
    local reset = 0
    if write and cost > 0 then
      total = total + cost
      if remaining_entries and last_t == at then
        redis.call('LSET', lkey, -1, string.format('%d', last_c + cost))
      else
        redis.call('RPUSH', lkey, string.format('%d', at), string.format('%d', cost))
      end
      reset = at + window - now
      local ttl = ttl_ms(reset)
      redis.call('SET', tkey, string.format('%d', total), 'PX', ttl)
      redis.call('PEXPIRE', lkey, ttl)
    elseif remaining_entries then
      reset = last_t + window - now
    end
    return {1, limit - total, 0, reset}
  end
  -- Admitted once enough of the oldest entries have left: walk O(cost) entries (a page at a
  -- time: a refunded entry may hold 0).
  local need = total + cost - limit
  local freed, start, frees_at = 0, 0, last_t
  while freed < need do
    local entries = redis.call('LRANGE', lkey, start, start + 2 * need - 1)
    if #entries < 2 then
      break
    end
    for j = 1, #entries - 1, 2 do
      freed = freed + tonumber(entries[j + 1])
      if freed >= need then
        frees_at = tonumber(entries[j])
        break
      end
    end
    start = start + #entries
  end
  return {0, limit - total, frees_at + window - now, last_t + window - now}
end

local specs = {}
local k = 1
for i = 1, n do
  local b = 5 * i
  local algo = ARGV[b]
  specs[i] = {algo, tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]),
    tonumber(ARGV[b + 4]), k}
  if algo == 'l' then
    k = k + 2
  else
    k = k + 1
  end
end

local function run(s, write)
  if s[1] == 't' then
    return gcra(s[6], s[2], s[3], s[5], write)
  elseif s[1] == 'c' then
    return counter(s[6], s[2], s[3], s[4], s[5], write)
  end
  return slog(s[6], s[2], s[3], s[5], write)
end

-- Refunds undo an admission made at `now` by an earlier call of this script. They never
-- give back more than was taken, so a refund can only make the limit stricter than exact.
local function refund_gcra(k, interval, cost)
  local key = KEYS[k]
  local tat = tonumber(redis.call('GET', key))
  if not tat then
    return
  end
  tat = tat - cost * interval
  if tat <= now then
    redis.call('DEL', key)
  else
    gcra_store(key, tat)
  end
end

local function refund_counter(k, w, tick, cost)
  local key = KEYS[k]
  local s = redis.call('HMGET', key, 'i', 'p', 'c')
  local si = tonumber(s[1])
  if not si then
    return
  end
  local index = idiv(idiv(now, tick), w)
  local field
  if si == index then
    field = 'c'
  elseif si == index + 1 then
    field = 'p'
  else
    return
  end
  local left = tonumber(s[field == 'c' and 3 or 2]) - cost
  if left < 0 then
    left = 0
  end
  redis.call('HSET', key, field, string.format('%d', left))
end

local function refund_log(k, cost)
  -- The admission is the last entry at or after `now` when it was made; later admissions may
  -- have been appended since. Take the cost back from the newest entries at or after `now`:
  -- the total is then exact, and a unit that leaves later than it should is only stricter.
  local lkey, tkey = KEYS[k], KEYS[k + 1]
  local total = tonumber(redis.call('GET', tkey))
  if not total then
    return
  end
  local left = cost
  local index = -2
  while left > 0 do
    local pair = redis.call('LRANGE', lkey, index, index + 1)
    if #pair < 2 or tonumber(pair[1]) < now then
      break
    end
    local c = tonumber(pair[2])
    local take = c < left and c or left
    redis.call('LSET', lkey, index + 1, string.format('%d', c - take))
    left = left - take
    total = total - take
    index = index - 2
  end
  redis.call('SET', tkey, string.format('%d', total), 'KEEPTTL')
end

if refund then
  for i = 1, n do
    local s = specs[i]
    if s[1] == 't' then
      refund_gcra(s[6], s[2], s[5])
    elseif s[1] == 'c' then
      refund_counter(s[6], s[3], s[4], s[5])
    else
      refund_log(s[6], s[5])
    end
  end
  return {now}
end

local verdicts = {}
if reserve_max then
  local s = specs[1]
  if n ~= 1 or s[1] ~= 't' then
    return redis.error_reply('reservations are for one token bucket')
  end
  verdicts[1] = gcra_reserve(s[6], s[2], s[3], s[5], reserve_max)
elseif n == 1 then
  verdicts[1] = run(specs[1], consume)
else
  local all = true
  for i = 1, n do
    verdicts[i] = run(specs[i], false)
    if verdicts[i][1] == 0 then
      all = false
    end
  end
  if consume and all then
    for i = 1, n do
      verdicts[i] = run(specs[i], true)
    end
  end
end

local out = {}
for i = 1, n do
  local v = verdicts[i]
  for j = 1, 4 do
    out[#out + 1] = v[j]
  end
end
out[#out + 1] = now
return out
