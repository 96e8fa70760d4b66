-- Idempotent enqueue: the first task id to claim a key owns it for ttl_ms.
-- KEYS[1] enqueue record of the key. ARGV: task id, ttl_ms. Returns the owning task id.
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return ARGV[1]
