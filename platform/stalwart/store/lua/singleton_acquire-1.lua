-- A singleton job asks for its key's run slot. Granted: it holds a lease, and if it was the
-- waiting job it stops being it in the same step (a later enqueue makes a new waiting job).
-- Denied: it waits; with no waiting job it becomes the waiting one (later enqueues merge into it).
-- KEYS[1] singleton hash {waiting, wstate, wseen, holder, until, since, avg}
-- ARGV: task id, lease token, lease_ms, ttl_ms, max_retry_ms
-- Returns {1, 0} granted | {0, ms to wait}: about the holder's expected rest (its key's average
-- run so far), a quarter of its run once past that, never past its lease nor over max_retry_ms.
local now = clock_ms()
local holder = redis.call('HGET', KEYS[1], 'holder')
local ttl = tonumber(ARGV[4])
if holder and holder ~= ARGV[2] then
  local left = tonumber(redis.call('HGET', KEYS[1], 'until') or '0') - now
  if left > 0 then
    local waiting = redis.call('HGET', KEYS[1], 'waiting')
    if not waiting or waiting == ARGV[1] then
      redis.call('HSET', KEYS[1], 'waiting', ARGV[1], 'wstate', 'queued', 'wseen', now)
    end
    redis.call('PEXPIRE', KEYS[1], ttl)
    local ran = now - tonumber(redis.call('HGET', KEYS[1], 'since') or tostring(now))
    local rest = tonumber(redis.call('HGET', KEYS[1], 'avg') or '0') - ran
    if rest <= 0 then rest = ran / 4 end
    return {0, math.floor(math.max(20, math.min(rest, left, tonumber(ARGV[5]))))}
  end
end
redis.call('HSET', KEYS[1], 'holder', ARGV[2], 'until', now + tonumber(ARGV[3]), 'since', now)
if redis.call('HGET', KEYS[1], 'waiting') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'waiting', 'wstate', 'wseen')
end
redis.call('PEXPIRE', KEYS[1], ttl)
return {1, 0}
