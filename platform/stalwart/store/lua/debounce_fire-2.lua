-- A burst's trigger fires: close the burst when it is due (its call and deadline move to the
-- closed hash until the job is published), or say how long it still waits.
-- KEYS[1] burst hash; KEYS[2] closed hash: <burst id> -> call, <burst id>:deadline -> epoch ms,
-- of a closed, not yet published burst
-- ARGV: burst id, ttl_ms, rearm_ms
-- Returns {action, call, ms to wait, deadline (epoch ms on this clock, or ''), now}: action 'run'
-- (publish the call), 'wait' (the burst's latest call comes along: the trigger sent again carries
-- it) or 'gone' (no trace of it here: a burst whose job was published, or one the store lost).
local now = clock_ms()
local closed = redis.call('HGET', KEYS[2], ARGV[1])
if closed then
  return {'run', closed, 0, redis.call('HGET', KEYS[2], ARGV[1] .. ':deadline') or '', now}
end
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return {'gone', '', 0, '', now} end
local due = tonumber(redis.call('HGET', KEYS[1], 'due'))
local call = redis.call('HGET', KEYS[1], 'call')
local deadline = redis.call('HGET', KEYS[1], 'deadline') or ''
if now < due then
  redis.call('HSET', KEYS[1], 'fire_by', due + tonumber(ARGV[3]))
  return {'wait', call, due - now, deadline, now}
end
redis.call('HSET', KEYS[2], ARGV[1], call)
if deadline ~= '' then redis.call('HSET', KEYS[2], ARGV[1] .. ':deadline', deadline) end
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]))
redis.call('DEL', KEYS[1])
return {'run', call, 0, deadline, now}
