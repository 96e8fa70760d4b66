-- The holder of a key's run slot finished: the slot is free (the waiting job, if any, stays).
-- KEYS[1] singleton hash; ARGV: lease token. Returns 1 when it still held the slot.
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'holder', 'until')
return 1
