-- One acquire of a rendered key of a per-key policy: raise the key's activity in its template's
-- busiest-keys set, keeping the set capped and expiring.
-- KEYS[1] zset: rendered key -> ln(activity) + now_s / decay_s, so each acquire adds e^(now/decay)
--   (log-added, never overflowing) and members rank by activity decayed to a common time
-- ARGV: rendered key, decay_s, cap (the least active members past it are dropped), ttl_ms
-- Returns the number of members kept.
--- @include capped_zset
local x = clock_s() / tonumber(ARGV[2])
local old = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
local score = x
if old then
  local hi, lo = math.max(old, x), math.min(old, x)
  score = hi + math.log(1 + math.exp(lo - hi))
end
redis.call('ZADD', KEYS[1], string.format('%.9f', score), ARGV[1])
return capped_zset(KEYS[1], tonumber(ARGV[3]), tonumber(ARGV[4]))
