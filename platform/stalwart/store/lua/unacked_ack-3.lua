-- Acknowledge a message: forget its unacked record, its index entry and its fetch count.
-- KEYS[1] unacked hash; KEYS[2] unacked index; KEYS[3] fetch counts. ARGV[1] delivery tag
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
