-- A closed burst's job was published: forget its call (and its deadline).
-- KEYS[1] closed hash; ARGV: burst id. Returns 1 when its call was there.
return math.min(1, redis.call('HDEL', KEYS[1], ARGV[1], ARGV[1] .. ':deadline'))
