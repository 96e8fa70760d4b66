-- Record the outcome of a call through a breaker and make the transition it implies, atomically.
-- KEYS[1] state hash; KEYS[2] probes zset; KEYS[3] buckets hash: a ring of `window` slots,
--   "<second % window>:t" = the second the slot counts, ":c|f|s" = its calls, failures, slow
--   calls; a slot is reset when a new second reuses it, so the hash never holds more than
--   4 * window fields however long the traffic runs, and each call costs the same;
-- KEYS[4] in-flight zset of closed-state calls
-- ARGV: kind (success|failure|ignore), slow 0/1, probe_id ('' = not a probe), window_s,
--       min_calls, failure_rate, slow_rate (<0 = off), open_ms, probes, call_id ('' = none),
--       idle_ms (how long the state of an unused breaker is kept)
-- Returns the state after the call.
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

local slot = sec % window
if tonumber(redis.call('HGET', KEYS[3], slot .. ':t') or '-1') ~= sec then
  redis.call('HSET', KEYS[3], slot .. ':t', sec, slot .. ':c', 0, slot .. ':f', 0, slot .. ':s', 0)
end
redis.call('HINCRBY', KEYS[3], slot .. ':c', 1)
if kind == 'failure' then redis.call('HINCRBY', KEYS[3], slot .. ':f', 1) end
if slow == 1 then redis.call('HINCRBY', KEYS[3], slot .. ':s', 1) end
redis.call('PEXPIRE', KEYS[3], (window + 5) * 1000)
if kind ~= 'failure' and slow == 0 then return state end  -- only a bad call can trip it

local slots = {}
local fields = redis.call('HGETALL', KEYS[3])
for i = 1, #fields, 2 do
  local at, what = string.match(fields[i], '^(%d+):(%a)$')
  if at == nil or tonumber(at) >= window then
    redis.call('HDEL', KEYS[3], fields[i])  -- a slot of a larger window set before, or junk
  else
    slots[at] = slots[at] or {}
    slots[at][what] = tonumber(fields[i + 1])
  end
end
local calls, failures, slows = 0, 0, 0
for _, b in pairs(slots) do
  if b.t and b.t > sec - window and b.t <= sec then
    calls, failures, slows = calls + (b.c or 0), failures + (b.f or 0), slows + (b.s or 0)
  end
end
if calls < min_calls then return state end
if failures / calls >= failure_rate then return trip('failure rate') end
if slow_rate >= 0 and slows / calls >= slow_rate then return trip('slow-call rate') end
return state
