-- End of a delivery: record the outcome on the job hash.
-- KEYS[1] job hash
-- ARGV: owner, outcome (done|dead|waiting|released), result, ttl_ms, next_gen
-- done/dead are final; waiting means a successor message (retry, deferral) was published.
local job = KEYS[1]
local outcome = ARGV[2]
-- done is final: a body that committed its effect (stalwart.idempotency) and then failed
-- must not hand the job back to run again.
if outcome ~= 'done' and redis.call('HGET', job, 'state') == 'done' then return 0 end
if outcome == 'done' then
  redis.call('HSET', job, 'state', 'done', 'result', ARGV[3], 'deliveries', 0)
  redis.call('HDEL', job, 'owner', 'lease')
elseif outcome == 'dead' then
  redis.call('HSET', job, 'state', 'dead', 'deliveries', 0)
  redis.call('HDEL', job, 'owner', 'lease')
else
  local owner = redis.call('HGET', job, 'owner')
  if owner and owner ~= ARGV[1] then return 0 end
  redis.call('HSET', job, 'state', outcome, 'deliveries', 0)
  if tonumber(ARGV[5]) > tonumber(redis.call('HGET', job, 'gen') or '0') then
    redis.call('HSET', job, 'gen', ARGV[5])
  end
  redis.call('HDEL', job, 'owner', 'lease')
end
redis.call('PEXPIRE', job, tonumber(ARGV[4]))
return 1
