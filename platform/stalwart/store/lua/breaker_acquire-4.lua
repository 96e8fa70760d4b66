-- Ask a circuit breaker for a permit.
-- Closed: grant, holding an in-flight slot (id -> expiry) until the call's outcome is recorded.
--   While a verdict is pending (the window holds a failure, and if every call still out failed the
--   breaker would trip), new calls wait for those outcomes instead of reaching the dependency:
--   so a failing dependency sees at most min_calls calls before the breaker opens, fleet-wide.
-- Open: deny until it may half-open. Half-open: at most N probes in flight across all workers,
--   each a slot with a TTL so a crashed prober frees it.
-- KEYS[1] state hash; KEYS[2] probes zset; KEYS[3] buckets hash (the window: see sweep);
-- KEYS[4] in-flight zset
-- ARGV: probes, slot_ttl_ms, slot_id, busy_wait_ms, window_s, min_calls, failure_rate, idle_ms
-- Returns {granted 0/1, wait_ms, state, probe 0/1}
local now = clock_ms()
local f = redis.call('HMGET', KEYS[1], 'state', 'open_until')
local state = f[1] or 'closed'
local ttl = tonumber(ARGV[2])

-- The failure window, in KEYS[3]: a ring of `window` one-second slots ("<second % window>:t" =
-- the second a slot counts, ":c|f|s" = its calls, failures, slow calls) plus running totals
-- ("sum:c|f|s") over the slots still in the window, "swept", the second up to which slots
-- that left the window were subtracted, and "w", the window they were counted for. Each second
-- leaves the window once, so a call costs O(1) amortised, whatever the window or the length of
-- the traffic.
--- @include breaker_window

local function pending_verdict()
  local inflight = redis.call('ZCARD', KEYS[4])
  if inflight == 0 then return false end
  sweep(KEYS[3], math.floor(now / 1000), tonumber(ARGV[5]))
  local t = redis.call('HMGET', KEYS[3], 'sum:c', 'sum:f')
  local calls, failures = tonumber(t[1] or '0'), tonumber(t[2] or '0')
  if failures == 0 or calls + inflight < tonumber(ARGV[6]) then return false end
  return (failures + inflight) / (calls + inflight) >= tonumber(ARGV[7])
end

if state == 'closed' then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)  -- crashed callers' slots expire
  if pending_verdict() then return {0, tonumber(ARGV[4]), state, 0} end
  redis.call('ZADD', KEYS[4], now + ttl, ARGV[3])
  redis.call('PEXPIRE', KEYS[4], ttl * 2)
  return {1, 0, state, 0}
end
if state == 'forced_open' then return {0, tonumber(ARGV[4]) * 10, state, 0} end
if state == 'open' then
  local wait = (tonumber(f[2]) or 0) - now
  if wait > 0 then return {0, wait, state, 0} end
  state = 'half_open'
  redis.call('HSET', KEYS[1], 'state', state, 'half_open_at', now, 'probe_ok', 0)
  redis.call('HINCRBY', KEYS[1], 'transitions', 1)
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[8]))  -- an idle breaker's state expires
  redis.call('DEL', KEYS[2])
end
-- half_open: crashed probers' slots expire
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[2], now + ttl, ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ttl * 2)
  redis.call('HINCRBY', KEYS[1], 'probes', 1)
  return {1, 0, state, 1}
end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local wait = math.min(tonumber(first[2]) - now, tonumber(ARGV[4]))
return {0, math.max(wait, 1), state, 0}
