-- One debounced enqueue: join the key's open burst (its call becomes this one, its due time
-- moves to wait after now, never past first + max_wait) or open a new burst under ARGV[1].
-- KEYS[1] burst hash {id, first, due, call, fire_by, deadline}
-- ARGV: new burst id, wait_ms, max_wait_ms (0: no cap), call (JSON), ttl_ms, rearm_ms,
--       the call's deadline in ms from now ('' for none)
-- Returns {burst id, 1 new burst | 2 joined and the trigger looks lost | 0 joined, ms until due,
--          the call's deadline on this (the Redis) clock, epoch ms, or ''}
-- fire_by is when the burst's trigger should have looked at it (due + rearm_ms): a burst still
-- open past it lost its trigger (its enqueuer died before publishing one), and this caller re-arms.
-- The deadline is the latest call's, made absolute here so that no producer's clock decides it.
local now = clock_ms()
local wait, cap, ttl, rearm = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[5]), tonumber(ARGV[6])
local deadline = ''
if ARGV[7] ~= '' then deadline = tostring(now + tonumber(ARGV[7])) end
local id = redis.call('HGET', KEYS[1], 'id')
if id then
  local due = now + wait
  if cap > 0 then due = math.min(due, tonumber(redis.call('HGET', KEYS[1], 'first')) + cap) end
  redis.call('HSET', KEYS[1], 'call', ARGV[4], 'due', due, 'deadline', deadline)
  local code = 0
  if now > tonumber(redis.call('HGET', KEYS[1], 'fire_by') or '0') then
    redis.call('HSET', KEYS[1], 'fire_by', math.max(due, now) + rearm)
    code = 2
  end
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {id, code, math.max(0, due - now), deadline}
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'first', now, 'due', now + wait, 'call', ARGV[4],
           'fire_by', now + wait + rearm, 'deadline', deadline)
redis.call('PEXPIRE', KEYS[1], ttl)
return {ARGV[1], 1, wait, deadline}
