-- Fair lanes (stalwart.store.fair): start-time fair queuing over the fair_by keys of one queue list.
-- A lane is a zset of members '<16 hex digits of a sequence><payload>' scored by start tag; the
-- sequence keeps members unique and breaks ties first come, first served. The tails zset holds
-- each key's finish tag (its next job's start); the clock hash holds v (the lane's virtual time:
-- the start tag of the last job served), plain (the plain list's own finish tag: the plain list is
-- one more key of weight 1) and seq.
local FAIR_WAKE = 'stalwart:fair-wake'  -- pushed on the plain list to wake an idle consumer's BLMOVE
local FAIR_SEQ_CHARS = 16
local FAIR_MARK = '\0fair:'  -- a lane's list in the delayed sets' registry: '\0fair:<list>'

-- A number read from the lane's keys: anything that is not a finite number (garbage written by
-- hand, 'nan') counts as 0, so it can neither stop the lane nor lose a job.
local function lane_number(value)
  local n = tonumber(value)
  if n == nil or n ~= n or n == math.huge or n == -math.huge then return 0 end
  return n
end

-- Queue payload as the next job of key: start = max(v, tail[key]), tail[key] = start + 1/weight.
-- The first job of an empty lane also wakes a consumer waiting on the (empty) plain list. A lane
-- whose keys cannot be used (another type) takes nothing: the job goes to the plain list instead,
-- so a publish never fails for it. Returns the start tag (-1: queued plainly).
local function fair_push(lane, tails, clock, list, registry, key, weight, payload)
  weight = tonumber(weight) or 1
  if weight ~= weight then weight = 1 end
  weight = math.min(1000, math.max(0.001, weight))
  local v = redis.pcall('HGET', clock, 'v')
  local tail = redis.pcall('ZSCORE', tails, key)
  local size = redis.pcall('ZCARD', lane)
  if type(v) == 'table' or type(tail) == 'table' or type(size) ~= 'number' then
    redis.call('LPUSH', list, payload)
    return -1
  end
  local start = math.max(lane_number(v), lane_number(tail))
  local seq = redis.pcall('HINCRBY', clock, 'seq', 1)
  if type(seq) ~= 'number' then  -- a garbled counter starts again (members stay unique by payload)
    seq = 1
    redis.call('HSET', clock, 'seq', seq)
  end
  redis.call('ZADD', tails, start + 1 / weight, key)
  redis.call('ZADD', lane, start, string.format('%016x', seq) .. payload)
  redis.call('SADD', registry, FAIR_MARK .. list)
  if size == 0 then
    local queued = redis.pcall('LLEN', list)
    if queued == 0 then redis.call('LPUSH', list, FAIR_WAKE) end
  end
  return start
end
