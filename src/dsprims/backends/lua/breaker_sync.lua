-- Circuit breaker fleet state: read, or compare-and-set on a version number, guarded by time.
-- The state machine itself runs in Python (dsprims.breaker.core); this script only makes each
-- proposed change atomic across processes and announces it on a pub/sub channel.
--
-- KEYS[1]      the breaker's state hash: namespaced_key(prefix, name, "state")
-- ARGV[1]      expected version (integer); -1 = read only
-- ARGV[2]      now, integer milliseconds since the Unix epoch; "" = use the server's TIME
-- ARGV[3]      not_before, integer ms: apply only when now >= not_before (0 = no guard); this is
--              what keeps an open period from ending early on a client whose clock runs ahead
-- ARGV[4]      pub/sub channel announcing an applied change ("" = none); the message is
--              "version,<the 9 state integers>,now_ms"
-- ARGV[5..13]  the proposed state, integers: state code, generation, since (ms), open_until
--              (ms), open count, half-open permits out, trial calls, trial failures, trial slow
-- ARGV[14]     the client's estimate of now (ms) the proposal was computed at, or "" when the
--              client's time is authoritative (a pinned clock). A proposal that starts a new
--              generation has its since/open_until re-anchored on the server's now, so an open
--              period lasts exactly its duration on the server's clock whatever the estimate.
-- Reply: {applied 1/0, now_ms, version, the 9 state integers as stored after the call}
local now
if ARGV[2] == "" then
  local t = redis.call("TIME")
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[2])
end
local fields = {"st", "gen", "since", "until", "opens", "out", "tc", "tf", "ts"}
local cur = redis.call("HMGET", KEYS[1], "ver", unpack(fields))
local ver = tonumber(cur[1]) or 0
local state = {}
for i = 1, 9 do
  state[i] = cur[i + 1] or "0"
end
local expected = tonumber(ARGV[1])
local applied = 0
if expected >= 0 and expected == ver and now >= tonumber(ARGV[3]) then
  ver = ver + 1
  local new_gen = ARGV[6] ~= state[2]
  local args = {"ver", tostring(ver)}
  for i = 1, 9 do
    state[i] = ARGV[4 + i]
  end
  if new_gen and ARGV[14] ~= "" then
    local shift = now - tonumber(ARGV[14])
    state[3] = tostring(tonumber(state[3]) + shift)
    if tonumber(state[4]) ~= 0 then
      state[4] = tostring(tonumber(state[4]) + shift)
    end
  end
  for i = 1, 9 do
    args[#args + 1] = fields[i]
    args[#args + 1] = state[i]
  end
  redis.call("HSET", KEYS[1], unpack(args))
  applied = 1
  if ARGV[4] ~= "" then
    redis.call(
      "PUBLISH", ARGV[4], tostring(ver) .. "," .. table.concat(state, ",") .. "," .. tostring(now)
    )
  end
end
local reply = {applied, now, ver}
for i = 1, 9 do
  reply[3 + i] = tonumber(state[i])
end
return reply
