-- Move due fair messages from a lane's delayed set into the lane, each as the next job of its key,
-- atomically: a mover that dies mid-move loses nothing and never publishes twice.
-- KEYS[1] the lane's delayed zset (members '<weight> <key bytes> <key><payload>', see
-- stalwart.store.fair.delayed_member); KEYS[2] lane; KEYS[3] tails; KEYS[4] clock; KEYS[5] plain
-- queue list; KEYS[6] the delayed sets' registry. ARGV: max messages.
-- A member that does not parse goes to the plain list as it is (the fetch quarantines what it
-- cannot run). A lane with nothing delayed and nothing queued leaves the registry.
-- Returns {moved, ms until the next one is due (-1 when empty)}
--- @include fair_lane
local now = clock_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  local weight, size, rest = string.match(member, '^(%S+) (%d+) ()')
  weight, size = tonumber(weight), tonumber(size)
  if weight and weight > 0 and size and size > 0 and rest + size <= #member + 1 then
    fair_push(KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], string.sub(member, rest, rest + size - 1), weight,
      string.sub(member, rest + size))
  else
    redis.call('LPUSH', KEYS[5], member)
  end
  redis.call('ZREM', KEYS[1], member)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nxt == 0 then
  -- nothing delayed and nothing queued: the lane leaves the registry (fair_push adds it again)
  if redis.call('ZCARD', KEYS[2]) == 0 then redis.call('SREM', KEYS[6], FAIR_MARK .. KEYS[5]) end
  return {#due, -1}
end
return {#due, math.max(0, tonumber(nxt[2]) - now)}
