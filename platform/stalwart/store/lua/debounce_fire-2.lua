-- A burst's trigger fires: close the burst when it is due (its call moves to the closed hash
-- until the job is published), or say how long it still waits.
-- KEYS[1] burst hash; KEYS[2] closed hash: burst id -> call of a closed, not yet published burst
-- ARGV: burst id, ttl_ms, rearm_ms
-- Returns {'run', call} | {'wait', ms} | {'gone', ''} (another burst, or none: nothing to do)
local now = clock_ms()
local closed = redis.call('HGET', KEYS[2], ARGV[1])
if closed then return {'run', closed} end
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return {'gone', ''} end
local due = tonumber(redis.call('HGET', KEYS[1], 'due'))
if now < due then
  redis.call('HSET', KEYS[1], 'fire_by', due + tonumber(ARGV[3]))
  return {'wait', tostring(due - now)}
end
local call = redis.call('HGET', KEYS[1], 'call')
redis.call('HSET', KEYS[2], ARGV[1], call)
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]))
redis.call('DEL', KEYS[1])
return {'run', call}
