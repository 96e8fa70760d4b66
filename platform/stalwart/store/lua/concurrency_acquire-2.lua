-- Take a leased slot of a concurrency limit; expired leases (dead holders) are reclaimed first.
-- KEYS[1] holders zset: lease id -> expiry ms; KEYS[2] stats hash (granted, denied, reclaimed, avg_ms)
-- ARGV: limit, lease_ms, lease_id, idle_ms (TTL of the stats hash, renewed on every call)
-- Returns {granted 0/1, wait_ms, holders}
local now = clock_ms()
local limit = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local reclaimed = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if reclaimed > 0 then redis.call('HINCRBY', KEYS[2], 'reclaimed', reclaimed) end
local holders = redis.call('ZCARD', KEYS[1])
if holders < limit then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], lease * 2)
  redis.call('HINCRBY', KEYS[2], 'granted', 1)
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]))
  return {1, 0, holders + 1}
end
redis.call('HINCRBY', KEYS[2], 'denied', 1)
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]))
-- Wait about one typical hold (holders usually release), never past the earliest expiry.
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local until_expiry = tonumber(first[2]) - now
local avg = tonumber(redis.call('HGET', KEYS[2], 'avg_ms') or '100')
local wait = math.min(until_expiry, math.max(20, math.floor(avg / limit)))
return {0, math.max(wait, 1), holders}
