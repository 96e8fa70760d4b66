-- Record the outcome of a call through a breaker and make the transition it implies, atomically.
-- KEYS[1] state hash; KEYS[2] probes zset; KEYS[3] buckets hash (the window: see sweep; at
--   most 4 * window + 4 fields however long the traffic runs); KEYS[4] in-flight zset
-- ARGV: kind (success|failure|ignore), slow 0/1, probe_id ('' = not a probe), window_s,
--       min_calls, failure_rate, slow_rate (<0 = off), open_ms, probes, call_id ('' = none),
--       idle_ms (how long the state of an unused breaker is kept)
-- Returns the state after the call.
-- The failure window, in KEYS[3]: a ring of `window` one-second slots ("<second % window>:t" =
-- the second a slot counts, ":c|f|s" = its calls, failures, slow calls) plus running totals
-- ("sum:c|f|s") over the slots still in the window, "swept", the second up to which slots
-- that left the window were subtracted, and "w", the window they were counted for. Each second
-- leaves the window once, so a call costs O(1) amortised, whatever the window or the length of
-- the traffic.
--- @include breaker_window

local now = clock_ms()
local sec = math.floor(now / 1000)
local kind, slow, probe = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local window, min_calls = tonumber(ARGV[4]), tonumber(ARGV[5])
local failure_rate, slow_rate = tonumber(ARGV[6]), tonumber(ARGV[7])
local open_ms, probes = tonumber(ARGV[8]), tonumber(ARGV[9])
local idle_ms = tonumber(ARGV[11])
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if ARGV[10] ~= nil and ARGV[10] ~= '' then redis.call('ZREM', KEYS[4], ARGV[10]) end

local function trip(reason)
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now, 'open_until', now + open_ms,
    'reason', reason)
  redis.call('HINCRBY', KEYS[1], 'transitions', 1)
  redis.call('PEXPIRE', KEYS[1], open_ms + idle_ms)
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
  return 'open'
end

if probe ~= '' then
  local held = redis.call('ZREM', KEYS[2], probe)
  if state ~= 'half_open' or held == 0 or kind == 'ignore' then return state end
  if kind == 'failure' or (slow == 1 and slow_rate >= 0) then return trip('probe failed') end
  local ok = redis.call('HINCRBY', KEYS[1], 'probe_ok', 1)
  if ok < probes then return state end
  redis.call('HSET', KEYS[1], 'state', 'closed', 'closed_at', now, 'probe_ok', 0)
  redis.call('HDEL', KEYS[1], 'open_until', 'reason')
  redis.call('HINCRBY', KEYS[1], 'transitions', 1)
  redis.call('PEXPIRE', KEYS[1], idle_ms)
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
  return 'closed'
end
if state ~= 'closed' or kind == 'ignore' then return state end

sweep(KEYS[3], sec, window)
local slot = sec % window
local at = tonumber(redis.call('HGET', KEYS[3], slot .. ':t') or '')
if at == nil or at < sec then  -- the slot's last second left the window (and was swept): reuse it
  redis.call('HSET', KEYS[3], slot .. ':t', sec, slot .. ':c', 0, slot .. ':f', 0, slot .. ':s', 0)
end
local failed, slowed = kind == 'failure' and 1 or 0, slow == 1 and 1 or 0
redis.call('HINCRBY', KEYS[3], slot .. ':c', 1)
redis.call('HINCRBY', KEYS[3], 'sum:c', 1)
if failed == 1 then
  redis.call('HINCRBY', KEYS[3], slot .. ':f', 1)
  redis.call('HINCRBY', KEYS[3], 'sum:f', 1)
end
if slowed == 1 then
  redis.call('HINCRBY', KEYS[3], slot .. ':s', 1)
  redis.call('HINCRBY', KEYS[3], 'sum:s', 1)
end
redis.call('PEXPIRE', KEYS[3], (window + 5) * 1000)
if failed == 0 and slowed == 0 then return state end  -- only a bad call can trip it

local t = redis.call('HMGET', KEYS[3], 'sum:c', 'sum:f', 'sum:s')
local calls, failures, slows = tonumber(t[1]), tonumber(t[2]), tonumber(t[3])
if calls < min_calls then return state end
if failures / calls >= failure_rate then return trip('failure rate') end
if slow_rate >= 0 and slows / calls >= slow_rate then return trip('slow-call rate') end
return state
