-- Remove dead-letter entries (replayed or purged), keeping the per-reason counts right.
-- KEYS as dlq_add. ARGV: stat field, ids...
local removed = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('HDEL', KEYS[1], id) == 1 then
    local reason = redis.call('HGET', KEYS[4], id)
    if reason then redis.call('HINCRBY', KEYS[3], 'reason:' .. reason, -1) end
    local origin = redis.call('HGET', KEYS[6], id)
    if origin then redis.call('HDEL', KEYS[5], origin) end
    redis.call('HDEL', KEYS[4], id)
    redis.call('HDEL', KEYS[6], id)
    redis.call('ZREM', KEYS[2], id)
    removed = removed + 1
  end
end
redis.call('HINCRBY', KEYS[3], ARGV[1], removed)
return removed
