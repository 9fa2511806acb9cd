-- Backend self-test: writes every key in KEYS with value ARGV[1] and a TTL of ARGV[2] ms,
-- then returns how many keys it wrote. Used by the conformance suite to prove that the keys
-- of one name share a cluster slot (a multi-key script would fail with CROSSSLOT otherwise).
-- KEYS: the keys to write. ARGV[1]: value. ARGV[2]: TTL in milliseconds (integer > 0).
for _, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
end
return #KEYS
