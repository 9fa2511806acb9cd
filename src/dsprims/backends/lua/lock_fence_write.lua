-- FencedStore write: store a value only if its fencing token is at least the highest token
-- already accepted for the key (equal tokens pass: one holder may write several times).
-- KEYS[1]: the value hash (fields t = highest token, v = value, k = 's' str or 'b' bytes).
-- ARGV[1]: the token as a decimal string (0 .. 2^63-1, no leading zeros).
-- ARGV[2]: the value. ARGV[3]: its kind, 's' or 'b'.
-- Returns {1, token} when written, {0, highest} when the token is stale (both as strings).
-- Tokens are compared as decimal strings (length first), so no precision is lost to Lua's
-- double-precision numbers.
local highest = redis.call('HGET', KEYS[1], 't')
local token = ARGV[1]
if highest then
  if #token < #highest or (#token == #highest and token < highest) then
    return {0, highest}
  end
end
redis.call('HSET', KEYS[1], 't', token, 'v', ARGV[2], 'k', ARGV[3])
return {1, token}
