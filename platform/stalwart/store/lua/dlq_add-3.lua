-- Add a dead-letter entry (idempotent by entry id) and apply retention, counting evictions.
-- KEYS[1] entries hash; KEYS[2] index zset (dead-at ms); KEYS[3] stats hash
-- ARGV: entry id, entry json, reason, max entries, max age ms
-- Returns {added (1/0), dead_at ms, evicted}
local now = clock_ms()
local id = ARGV[1]
if redis.call('HSETNX', KEYS[1], id, ARGV[2]) == 0 then return {0, now, 0} end
redis.call('ZADD', KEYS[2], now, id)
redis.call('HSET', KEYS[1], id .. ':reason', ARGV[3])
redis.call('HINCRBY', KEYS[3], 'reason:' .. ARGV[3], 1)
redis.call('HINCRBY', KEYS[3], 'added', 1)

local evicted = 0
local function evict(victims, why)
  for _, v in ipairs(victims) do
    local reason = redis.call('HGET', KEYS[1], v .. ':reason')
    if reason then redis.call('HINCRBY', KEYS[3], 'reason:' .. reason, -1) end
    redis.call('HDEL', KEYS[1], v, v .. ':reason')
    redis.call('ZREM', KEYS[2], v)
    redis.call('HINCRBY', KEYS[3], 'evicted:' .. why, 1)
    evicted = evicted + 1
  end
end
evict(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[5]), 'LIMIT', 0, 1000), 'age')
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if excess > 0 then evict(redis.call('ZRANGE', KEYS[2], 0, excess - 1), 'count') end
return {1, now, evicted}
