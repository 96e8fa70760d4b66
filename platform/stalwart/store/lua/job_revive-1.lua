-- Replay revives a dead job: it checks the job may run again, then forgets its claim and raises
-- the generation above every copy of the job that may still exist (a redelivered or delayed
-- message), so that only the replayed message, which carries the new generation, can run.
-- KEYS[1] job hash
-- ARGV: the dead message's generation, ttl_ms, the dead job's task id
-- Returns {code, value}: ok + the new generation | done | waiting | taken | busy + ms of lease left
local now = clock_ms()
local f = redis.call('HMGET', KEYS[1], 'state', 'lease', 'gen', 'task')
local state, task = f[1], ARGV[3]
-- a fresh enqueue took the key over since the job died: that job, not this one, owns it now
if f[4] and task ~= '' and f[4] ~= task then return {'taken', 0} end
if state == 'done' then return {'done', 0} end
if state == 'waiting' then return {'waiting', 0} end
local lease = tonumber(f[2] or '0')
if state == 'running' and lease > now then return {'busy', lease - now} end
local gen = math.max(tonumber(f[3] or '0'), tonumber(ARGV[1])) + 1
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'gen', gen)
if task ~= '' then redis.call('HSET', KEYS[1], 'task', task) end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return {'ok', gen}
