-- Put an unacked message back on its list, only if its record is still the one read (so two
-- workers restoring at once restore it once).
-- KEYS[1] unacked hash; KEYS[2] unacked index; KEYS[3] fetch counts; KEYS[4] the list.
-- ARGV: tag, record, item, leftmost ('1': LPUSH, the back of the queue), forget ('1': an orderly
-- requeue by a live consumer, which does not count towards the crash-loop guard)
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if ARGV[5] == '1' then redis.call('HDEL', KEYS[3], ARGV[1]) end
if ARGV[4] == '1' then
  redis.call('LPUSH', KEYS[4], ARGV[3])
else
  redis.call('RPUSH', KEYS[4], ARGV[3])
end
return 1
