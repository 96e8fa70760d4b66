-- Operator control of a breaker: force_open (maintenance switch), close, reset.
-- KEYS[1] state hash; KEYS[2] probes zset; KEYS[3] buckets hash; KEYS[4] in-flight zset
-- ARGV: op, idle_ms. A forced-open breaker's state has no TTL: it stays open until an operator
-- closes or resets it; every other state expires after idle_ms without a transition.
local now = clock_ms()
local op = ARGV[1]
if op == 'force_open' then
  redis.call('HSET', KEYS[1], 'state', 'forced_open', 'opened_at', now, 'reason', 'forced open by operator')
  redis.call('HDEL', KEYS[1], 'open_until')
  redis.call('PERSIST', KEYS[1])
elseif op == 'close' then
  redis.call('HSET', KEYS[1], 'state', 'closed', 'closed_at', now, 'probe_ok', 0)
  redis.call('HDEL', KEYS[1], 'open_until', 'reason')
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  redis.call('DEL', KEYS[3])
elseif op == 'reset' then
  redis.call('DEL', KEYS[1], KEYS[3])
else
  return redis.error_reply('unknown breaker operation ' .. op)
end
redis.call('DEL', KEYS[2], KEYS[4])
if op ~= 'reset' then redis.call('HINCRBY', KEYS[1], 'transitions', 1) end
return redis.call('HGET', KEYS[1], 'state') or 'closed'
