-- Give a concurrency slot back and fold the hold time into the running average.
-- KEYS[1] holders zset; KEYS[2] stats hash; ARGV: lease_id, held_ms
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
local held = tonumber(ARGV[2])
if removed == 1 and held >= 0 then
  local avg = tonumber(redis.call('HGET', KEYS[2], 'avg_ms') or tostring(held))
  redis.call('HSET', KEYS[2], 'avg_ms', math.floor(avg * 0.8 + held * 0.2))
end
return removed
