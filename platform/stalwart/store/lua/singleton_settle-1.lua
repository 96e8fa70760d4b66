-- The enqueuer that reserved the wait published its job (ARGV[2] = 1) or failed to (0).
-- KEYS[1] singleton hash; ARGV: task id, published 1/0, ttl_ms. Returns 1 when it was still waiting.
if redis.call('HGET', KEYS[1], 'waiting') ~= ARGV[1] then return 0 end
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], 'wstate', 'queued', 'wseen', clock_ms())
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
else
  redis.call('HDEL', KEYS[1], 'waiting', 'wstate', 'wseen')
end
return 1
