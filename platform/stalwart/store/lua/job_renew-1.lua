-- Extend the lease of a running job, only while this owner still holds it.
-- KEYS[1] job hash; ARGV: owner, lease_ms
local now = clock_ms()
local f = redis.call('HMGET', KEYS[1], 'state', 'owner')
if f[1] ~= 'running' or f[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'lease', now + tonumber(ARGV[2]))
return 1
