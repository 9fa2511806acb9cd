-- Liveness probe used by the backend conformance suite: returns the server time in
-- microseconds (TIME seconds * 1e6 + microseconds), proving EVALSHA and TIME both work.
-- KEYS: none. ARGV: none.
local t = redis.call('TIME')
return tonumber(t[1]) * 1000000 + tonumber(t[2])
