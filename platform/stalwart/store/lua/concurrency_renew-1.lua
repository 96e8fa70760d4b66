-- Extend a held concurrency lease; 0 when it was already reclaimed (the holder lost it).
-- KEYS[1] holders zset; ARGV: lease_id, lease_ms
local now = clock_ms()
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return 1
