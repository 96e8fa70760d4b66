-- Move a fetched message (recorded unacked) into its queue's delayed set, in one step: a plain
-- Celery ETA/countdown waits there, not in a worker's memory.
-- KEYS[1] delayed zset; KEYS[2] registry of delayed lists; KEYS[3] unacked hash; KEYS[4] unacked
-- index; KEYS[5] fetch counts. ARGV: due (epoch ms, Redis clock), payload, list key, tag
redis.call('ZADD', KEYS[1], tonumber(ARGV[1]), ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('HDEL', KEYS[3], ARGV[4])
redis.call('ZREM', KEYS[4], ARGV[4])
redis.call('HDEL', KEYS[5], ARGV[4])
return 1
