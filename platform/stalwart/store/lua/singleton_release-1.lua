-- The holder of a key's run slot finished: the slot is free (the waiting job, if any, stays), and
-- its run time is folded into the key's average (what a denied job's wait is based on).
-- KEYS[1] singleton hash; ARGV: lease token. Returns 1 when it still held the slot.
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then return 0 end
local held = clock_ms() - tonumber(redis.call('HGET', KEYS[1], 'since') or '0')
local avg = tonumber(redis.call('HGET', KEYS[1], 'avg') or tostring(held))
redis.call('HSET', KEYS[1], 'avg', math.floor(avg * 0.7 + held * 0.3))
redis.call('HDEL', KEYS[1], 'holder', 'until', 'since')
return 1
