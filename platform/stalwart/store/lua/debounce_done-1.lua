-- A closed burst's job was published: forget its call (and its deadline), and remember it as the
-- key's last published burst (so a late copy of its trigger publishes nothing).
-- KEYS[1] closed hash; ARGV: burst id, ttl_ms (set when the hash has no TTL: the store lost it
-- since the burst closed). Returns 1 when its call was there.
local found = redis.call('HDEL', KEYS[1], ARGV[1], ARGV[1] .. ':deadline')
redis.call('HSET', KEYS[1], 'last', ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2])) end
return math.min(1, found)
