-- A singleton enqueue: merge into the key's waiting job, or reserve the wait for ARGV[1].
-- KEYS[1] singleton hash {waiting, wstate (pending|queued), wseen, holder, until}
-- ARGV: new task id, ttl_ms, pending_ms, stale_ms
-- Returns {'merged', id} (a queued waiting job: publish nothing), {'pending', id} (another
-- enqueuer reserved the wait and is publishing: ask again shortly) or {'claimed', id} (publish).
-- A reservation older than pending_ms (its enqueuer died) and a queued waiting job not seen for
-- stale_ms (dead-lettered, or lost with a state-store restart) are replaced, never merged into.
local now = clock_ms()
local waiting = redis.call('HGET', KEYS[1], 'waiting')
if waiting then
  local seen = tonumber(redis.call('HGET', KEYS[1], 'wseen') or '0')
  if redis.call('HGET', KEYS[1], 'wstate') == 'pending' then
    if now - seen < tonumber(ARGV[3]) then return {'pending', waiting} end
  elseif now - seen < tonumber(ARGV[4]) then
    return {'merged', waiting}
  end
end
redis.call('HSET', KEYS[1], 'waiting', ARGV[1], 'wstate', 'pending', 'wseen', now)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return {'claimed', ARGV[1]}
