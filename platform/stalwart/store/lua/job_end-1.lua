-- End of a delivery: record the outcome on the job hash.
-- KEYS[1] job hash
-- ARGV: owner, outcome (done|dead|waiting), result, ttl_ms, next_gen, gen (the delivery's generation),
--       due_ms (waiting: ms until the successor is due)
-- done/dead are final; waiting means a successor message (retry, deferral) was published.
-- Returns 1 when recorded, 0 when refused (see the checks below).
local now = clock_ms()
local job = KEYS[1]
local outcome = ARGV[2]
local f = redis.call('HMGET', job, 'state', 'owner', 'lease', 'gen')
-- dead is final; so is done: a body that committed its effect (stalwart.commit) and then failed
-- must not hand the job back to run again (done may be written again over done).
if f[1] == 'dead' or (outcome ~= 'done' and f[1] == 'done') then return 0 end
-- A delivery of an older generation than the hash's was overtaken (a newer delivery handed the
-- job on to that generation): its dead/waiting verdict is stale and would drop the newer copy.
-- A late done is kept: the body's effect did happen, so the newer copy must not run it again.
if outcome ~= 'done' and tonumber(ARGV[6]) < tonumber(f[4] or '0') then return 0 end
if f[2] and f[2] ~= ARGV[1] then
  -- Another delivery holds the claim. A successor is only recorded by the holder; a verdict
  -- (done/dead) of a delivery whose lease lapsed must not overwrite a newer, live claim.
  if outcome == 'waiting' then return 0 end
  if f[1] == 'running' and tonumber(f[3] or '0') > now then return 0 end
end
if outcome == 'done' then
  redis.call('HSET', job, 'state', 'done', 'result', ARGV[3], 'deliveries', 0)
elseif outcome == 'dead' then
  redis.call('HSET', job, 'state', 'dead', 'deliveries', 0)
else
  redis.call('HSET', job, 'state', outcome, 'deliveries', 0)
  if tonumber(ARGV[5]) > tonumber(f[4] or '0') then
    redis.call('HSET', job, 'gen', ARGV[5])
  end
end
redis.call('HDEL', job, 'owner', 'lease')
local ttl = tonumber(ARGV[4])
if outcome == 'waiting' then
  -- The generation must outlive the wait for the successor (a retry an hour away, say): a
  -- leftover copy of an older generation arriving meanwhile is then still dropped as stale.
  ttl = ttl + math.max(0, tonumber(ARGV[7] or '0'))
end
redis.call('PEXPIRE', job, ttl)
return 1
