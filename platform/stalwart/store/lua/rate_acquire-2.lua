-- GCRA rate limit with reservations, one atomic decision. Time from Redis TIME.
-- KEYS[1] state hash: tat (scheduling TAT, includes reserved slots), gtat (grant TAT),
--         granted, denied, reserved (counters)
-- KEYS[2] reservations zset: member -> slot (ms) reserved for a deferred job
-- ARGV: interval_ms (float), burst, member ('' = no reservation), late_ms, slack, grace_ms
--   slack: extra grants the grant GCRA tolerates, so jobs that come back a little late for their
--   reserved slots do not push every later slot back (the lateness would otherwise accumulate)
-- Returns {granted 0/1, wait_ms (string, 3 decimals), how}
local now = clock_ms_exact()
local T = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local member = ARGV[3]
local late = tonumber(ARGV[4])
local tol = T * burst
local gtol = T * (burst + tonumber(ARGV[5]))
local f = redis.call('HMGET', KEYS[1], 'tat', 'gtat')
local tat = math.max(tonumber(f[1]) or now, now)
local gtat = math.max(tonumber(f[2]) or now, now)

local function keep(ms)
  redis.call('PEXPIRE', KEYS[1], math.ceil(ms + tol + 60000))
end
local function grant(new_tat, how)
  local new_gtat = gtat + T
  redis.call('HSET', KEYS[1], 'tat', string.format('%.3f', new_tat), 'gtat', string.format('%.3f', new_gtat))
  redis.call('HINCRBY', KEYS[1], 'granted', 1)
  keep(math.max(new_tat, new_gtat) - now)
  return {1, '0', how}
end
local function deny(wait, how)
  redis.call('HINCRBY', KEYS[1], 'denied', 1)
  return {0, string.format('%.3f', math.max(wait, 0)), how}
end

-- Drop reservations whose holder never came back (or came back far too late).
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%.3f', now - late))
local grant_wait = gtat + T - gtol - now  -- > 0: granting now would break the bound on grants

if member ~= '' then
  local slot = tonumber(redis.call('ZSCORE', KEYS[2], member))
  if slot then
    if now < slot then return deny(slot - now, 'early') end
    if grant_wait > 0 then
      -- late together with others: come back in turn, one interval apart, not all at once
      local ahead = redis.call('ZCOUNT', KEYS[2], '-inf', '(' .. string.format('%.3f', slot))
      return deny(grant_wait + ahead * T, 'spacing')
    end
    redis.call('ZREM', KEYS[2], member)
    return grant(tat, 'reserved')
  end
end

-- A reserved slot whose job is more than grace_ms late goes to whoever asks first (the late job
-- gets a new slot when it comes back), so slots are never wasted while jobs are waiting.
local grace = tonumber(ARGV[6])
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', string.format('%.3f', now - grace), 'LIMIT', 0, 1)
if #due > 0 and grant_wait <= 0 then
  redis.call('ZREM', KEYS[2], due[1])
  redis.call('HINCRBY', KEYS[1], 'handed_on', 1)
  return grant(tat, 'handed-on')
end

local new_tat = tat + T
local wait = new_tat - tol - now
if wait <= 0 and grant_wait <= 0 then
  return grant(new_tat, 'fresh')
end
if member == '' then
  return deny(math.max(wait, grant_wait), 'limited')
end
-- Reserve the next conforming slot for this job, so waiting jobs come back spread out.
local slot = new_tat - tol
redis.call('HSET', KEYS[1], 'tat', string.format('%.3f', new_tat))
redis.call('HINCRBY', KEYS[1], 'reserved', 1)
redis.call('ZADD', KEYS[2], string.format('%.3f', slot), member)
redis.call('PEXPIRE', KEYS[2], math.ceil(slot - now + late + 60000))
keep(new_tat - now)
return deny(math.max(slot - now, grant_wait), 'reserved')
