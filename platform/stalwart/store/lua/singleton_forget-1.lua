-- A singleton job was dead-lettered: if it is its key's waiting job it stops being it, so the
-- next enqueue makes a new waiting job instead of merging into one that will never run.
-- KEYS[1] singleton hash; ARGV: task id, ttl_ms. Returns 1 when it was the waiting job.
if redis.call('HGET', KEYS[1], 'waiting') ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'waiting', 'wstate', 'wseen')
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
