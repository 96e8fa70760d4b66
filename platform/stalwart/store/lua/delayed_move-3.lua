-- Move due messages from a delayed set to their queue list, atomically: a mover that dies
-- mid-move loses nothing and never publishes twice.
-- KEYS[1] delayed zset; KEYS[2] queue list; KEYS[3] the delayed sets' registry.
-- ARGV: max messages, the list's registry member.
-- An emptied delayed set leaves the registry (delayed_schedule adds it again with its next job),
-- so the movers never scan names of queues that have nothing delayed.
-- Returns {moved, ms until the next one is due (-1 when empty)}
local now = clock_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for i = 1, #due, 500 do
  local last = math.min(i + 499, #due)
  redis.call('LPUSH', KEYS[2], unpack(due, i, last))
  redis.call('ZREM', KEYS[1], unpack(due, i, last))
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nxt == 0 then
  redis.call('SREM', KEYS[3], ARGV[2])
  return {#due, -1}
end
return {#due, math.max(0, tonumber(nxt[2]) - now)}
