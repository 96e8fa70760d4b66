-- Idempotent enqueue: the first task id to claim a key owns it for ttl_ms.
-- KEYS[1] enqueue record of the key; KEYS[2] the state hash of the key's job
-- ARGV: task id, ttl_ms. Returns the owning task id.
-- The job hash names its task id too (written here and by job_begin) and is kept alive by the
-- job's leases and verdicts, so a key whose record expired while its job waited, ran or stayed
-- done still answers with that job's task id (and the record is written again).
-- A key whose job was dead-lettered does not block a fresh enqueue: the new task id takes the
-- key over, and the job hash names it, so leftover copies of the dead job (another task id) are
-- dropped as stale instead of running under the key.
local ttl = tonumber(ARGV[2])
local existing = redis.call('GET', KEYS[1])
local f = redis.call('HMGET', KEYS[2], 'state', 'task')
if existing ~= ARGV[1] and f[1] == 'dead' then
  redis.call('DEL', KEYS[2])
  f = {false, false}
elseif existing and existing ~= ARGV[1] then
  return existing
elseif not existing and f[2] and f[2] ~= ARGV[1] then
  redis.call('SET', KEYS[1], f[2], 'PX', ttl)
  return f[2]
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
if not f[2] then
  redis.call('HSET', KEYS[2], 'task', ARGV[1])
  if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
end
return ARGV[1]
