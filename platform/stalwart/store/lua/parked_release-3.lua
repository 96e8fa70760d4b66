-- Move parked messages back to their queue list, oldest first, atomically per batch: a process
-- that dies mid-release loses nothing and publishes nothing twice.
-- KEYS[1] parked zset; KEYS[2] queue list; KEYS[3] registry set
-- ARGV: max messages, registry member naming KEYS[1]'s pair
-- Returns the number moved; the pair leaves the registry once its set is empty.
local batch = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
for i = 1, #batch, 500 do
  local last = math.min(i + 499, #batch)
  redis.call('LPUSH', KEYS[2], unpack(batch, i, last))
  redis.call('ZREM', KEYS[1], unpack(batch, i, last))
end
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[3], ARGV[2]) end
return #batch
