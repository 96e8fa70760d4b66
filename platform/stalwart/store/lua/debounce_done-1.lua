-- A closed burst's job was published: forget its call.
-- KEYS[1] closed hash; ARGV: burst id. Returns 1 when it was there.
return redis.call('HDEL', KEYS[1], ARGV[1])
