-- Extend the lease of a running job, only while this owner still holds it. The hash's TTL is
-- extended too: a job that runs longer than its TTL keeps its state for as long as it runs.
-- KEYS[1] job hash; ARGV: owner, lease_ms, ttl_ms
local now = clock_ms()
local f = redis.call('HMGET', KEYS[1], 'state', 'owner')
if f[1] ~= 'running' or f[2] ~= ARGV[1] then return 0 end
local lease_ms = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'lease', now + lease_ms)
redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[3]), lease_ms * 2))
return 1
