-- The main process saw the child holding this job die: free the claim so the requeued
-- copy runs at once instead of waiting out the lease. The delivery count is kept.
-- KEYS[1] job hash; ARGV: owner prefix (host:pid of the dead child)
local f = redis.call('HMGET', KEYS[1], 'state', 'owner')
if f[1] ~= 'running' or not f[2] then return 0 end
if string.sub(f[2], 1, string.len(ARGV[1])) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'crashed')
redis.call('HDEL', KEYS[1], 'owner', 'lease')
return 1
