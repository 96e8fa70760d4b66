-- Remove dead-letter entries (replayed or purged), keeping the per-reason counts right.
-- KEYS[1] entries hash; KEYS[2] index zset; KEYS[3] stats hash. ARGV: stat field, ids...
local removed = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local reason = redis.call('HGET', KEYS[1], id .. ':reason')
  if redis.call('HDEL', KEYS[1], id) == 1 then
    if reason then redis.call('HINCRBY', KEYS[3], 'reason:' .. reason, -1) end
    redis.call('HDEL', KEYS[1], id .. ':reason')
    redis.call('ZREM', KEYS[2], id)
    removed = removed + 1
  end
end
redis.call('HINCRBY', KEYS[3], ARGV[1], removed)
return removed
