-- Start of a delivery: deadline, staleness, done/busy/dead checks, delivery count, claim.
-- KEYS[1] job hash
-- ARGV: owner (unique per delivery), lease_ms, max_deliveries, deadline_ms (0 = none), gen, ttl_ms,
--       task id ('' = unknown)
-- Returns {code, value, now[, linked]}: run|done|busy|poison|expired|dead|stale
local now = clock_ms()
local job = KEYS[1]
local owner = ARGV[1]
local lease_ms = tonumber(ARGV[2])
local max_deliveries = tonumber(ARGV[3])
local deadline = tonumber(ARGV[4])
local gen = tonumber(ARGV[5])
-- the hash outlives the lease it carries, however short the configured TTL
local ttl = math.max(tonumber(ARGV[6]), lease_ms * 2)

local task = ARGV[7] or ''

local f = redis.call('HMGET', job, 'state', 'owner', 'lease', 'gen', 'result', 'task', 'linked')
local state = f[1]
-- done: the result, and whether its callbacks/chain were sent (job_linked)
if state == 'done' then return {'done', f[5] or '', now, f[7] or '0'} end
if state == 'dead' then return {'dead', '', now} end
if gen < tonumber(f[4] or '0') then return {'stale', f[4] or '0', now} end
-- One key, one task id: a copy of another task id (a leftover of a dead job whose key a fresh
-- enqueue took over, or a duplicate enqueue whose record was lost) never claims beside it.
if f[6] and task ~= '' and f[6] ~= task then return {'stale', f[4] or '0', now} end
-- Every delivery has its own owner, so a second delivery of a running message is busy even in
-- the same process (threads, gevent): it never claims beside the first.
if state == 'running' and f[2] ~= owner and tonumber(f[3] or '0') > now then
  return {'busy', tostring(tonumber(f[3]) - now), now}
end
local deliveries = redis.call('HINCRBY', job, 'deliveries', 1)
redis.call('PEXPIRE', job, ttl)
if deliveries > max_deliveries then return {'poison', tostring(deliveries), now} end
if deadline > 0 and now >= deadline then return {'expired', tostring(deliveries), now} end
redis.call('HSET', job, 'state', 'running', 'owner', owner, 'lease', now + lease_ms, 'gen', gen)
if task ~= '' then redis.call('HSET', job, 'task', task) end
return {'run', tostring(deliveries), now}
