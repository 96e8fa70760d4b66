-- Put a message in a queue's delayed set, due delay_ms from now on the Redis clock.
-- KEYS[1] delayed zset; KEYS[2] registry set of delayed queue lists
-- ARGV: delay_ms, payload, list key the payload goes to when due
local now = clock_ms()
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return now + tonumber(ARGV[1])
