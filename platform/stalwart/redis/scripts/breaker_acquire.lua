-- Ask a circuit breaker for a permit. Closed: grant, no write. Open: deny until it may half-open.
-- Half-open: grant at most N probes in flight across all workers, each a slot with a TTL.
-- KEYS[1] state hash (state, opened_at, open_until, probe_ok, ...); KEYS[2] probes zset (id -> expiry)
-- ARGV: probes, probe_ttl_ms, probe_id, busy_wait_ms
-- Returns {granted 0/1, wait_ms, state, probe 0/1}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local f = redis.call('HMGET', KEYS[1], 'state', 'open_until')
local state = f[1] or 'closed'
if state == 'closed' then return {1, 0, state, 0} end
if state == 'forced_open' then return {0, tonumber(ARGV[4]) * 10, state, 0} end
if state == 'open' then
  local wait = (tonumber(f[2]) or 0) - now
  if wait > 0 then return {0, wait, state, 0} end
  state = 'half_open'
  redis.call('HSET', KEYS[1], 'state', state, 'half_open_at', now, 'probe_ok', 0)
  redis.call('HINCRBY', KEYS[1], 'transitions', 1)
  redis.call('DEL', KEYS[2])
end
-- half_open: crashed probers' slots expire
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]) * 2)
  redis.call('HINCRBY', KEYS[1], 'probes', 1)
  return {1, 0, state, 1}
end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local wait = math.min(tonumber(first[2]) - now, tonumber(ARGV[4]))
return {0, math.max(wait, 1), state, 0}
