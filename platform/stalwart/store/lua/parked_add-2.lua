-- Park the next message of a paused task's job until the task is resumed (no worker runs it).
-- KEYS[1] parked zset of one (queue list, task): payload -> Redis ms it was parked (FIFO order)
-- KEYS[2] registry set of parked (queue list, task) pairs
-- ARGV: payload, registry member naming KEYS[1]'s pair
redis.call('ZADD', KEYS[1], clock_ms(), ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return redis.call('ZCARD', KEYS[1])
