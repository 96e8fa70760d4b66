-- The unacked messages whose visibility timeout has passed on the Redis clock, with their records.
-- KEYS[1] unacked hash; KEYS[2] unacked index (seconds). ARGV: visibility timeout ms, max count
-- Returns {tag, record, tag, record, ...}; index entries without a record are dropped.
local ceil = clock_ms_exact() / 1000 - tonumber(ARGV[1]) / 1000
local tags = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ceil, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, tag in ipairs(tags) do
  local record = redis.call('HGET', KEYS[1], tag)
  if record then
    out[#out + 1] = tag
    out[#out + 1] = record
  else
    redis.call('ZREM', KEYS[2], tag)
  end
end
return out
