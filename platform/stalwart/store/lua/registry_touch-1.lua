-- Note that a limit or breaker name is in use, and forget names unused for too long.
-- KEYS[1] registry zset: name -> Redis ms it was last registered
-- ARGV: name, idle_ms (names older than this are dropped), cap (only the newest cap names kept)
-- Returns the number of names kept.
--- @include capped_zset
local now = clock_ms()
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[2])))
return capped_zset(KEYS[1], tonumber(ARGV[3]), tonumber(ARGV[2]))
