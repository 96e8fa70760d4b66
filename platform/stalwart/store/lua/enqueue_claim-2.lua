-- Idempotent enqueue: the first task id to claim a key owns it for ttl_ms.
-- KEYS[1] enqueue record of the key; KEYS[2] the state hash of the key's job
-- ARGV: task id, ttl_ms. Returns the owning task id.
-- A key whose job was dead-lettered does not block a fresh enqueue: the new task id takes the
-- key over, and the job hash names it, so leftover copies of the dead job (another task id) are
-- dropped as stale instead of running under the key.
local existing = redis.call('GET', KEYS[1])
if existing ~= ARGV[1] and redis.call('HGET', KEYS[2], 'state') == 'dead' then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], 'task', ARGV[1])
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]))
elseif existing and existing ~= ARGV[1] then
  return existing
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return ARGV[1]
