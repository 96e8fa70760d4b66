-- Keep only the cap highest-scored members of a zset (the rest, lowest first, are dropped) and
-- give it a TTL; returns the number of members kept.
local function capped_zset(key, cap, ttl_ms)
  local n = redis.call('ZCARD', key)
  if n > cap then
    redis.call('ZREMRANGEBYRANK', key, 0, n - cap - 1)
    n = cap
  end
  redis.call('PEXPIRE', key, ttl_ms)
  return n
end
