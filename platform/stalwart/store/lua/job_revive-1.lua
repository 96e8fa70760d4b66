-- Replay revives a dead job: it checks the job may run again, then forgets its claim and raises
-- the generation above every copy of the job that may still exist (a redelivered or delayed
-- message), so that only the replayed message, which carries the new generation, can run.
-- KEYS[1] job hash
-- ARGV: the dead message's generation, ttl_ms
-- Returns {code, value}: ok + the new generation | done | waiting | busy + ms of lease left
local now = clock_ms()
local f = redis.call('HMGET', KEYS[1], 'state', 'lease', 'gen')
local state = f[1]
if state == 'done' then return {'done', 0} end
if state == 'waiting' then return {'waiting', 0} end
local lease = tonumber(f[2] or '0')
if state == 'running' and lease > now then return {'busy', lease - now} end
local gen = math.max(tonumber(f[3] or '0'), tonumber(ARGV[1])) + 1
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'gen', gen)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return {'ok', gen}
