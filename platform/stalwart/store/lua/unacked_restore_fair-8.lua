-- Put an unacked fair message back into its lane (as its key's next job), only if its record is
-- still the one read (so two workers restoring at once restore it once).
-- KEYS[1] unacked hash; KEYS[2] unacked index; KEYS[3] fetch counts; KEYS[4] the plain list;
-- KEYS[5] lane; KEYS[6] tails; KEYS[7] clock; KEYS[8] the delayed sets' registry.
-- ARGV: tag, record, item, forget ('1': an orderly requeue by a live consumer, which does not
-- count towards the crash-loop guard), fair key, weight
--- @include fair_lane
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if ARGV[4] == '1' then redis.call('HDEL', KEYS[3], ARGV[1]) end
fair_push(KEYS[5], KEYS[6], KEYS[7], KEYS[4], KEYS[8], ARGV[5], tonumber(ARGV[6]), ARGV[3])
return 1
