-- Fair lanes (stalwart.store.fair): start-time fair queuing over the fair_by keys of one queue list.
-- A lane is a zset of members '<16 hex digits of a sequence><payload>' scored by start tag; the
-- sequence keeps members unique and breaks ties first come, first served. The tails zset holds
-- each key's finish tag (its next job's start); the clock hash holds v (the lane's virtual time:
-- the start tag of the last job served), plain (the plain list's own finish tag: the plain list is
-- one more key of weight 1) and seq.
local FAIR_WAKE = 'stalwart:fair-wake'  -- pushed on the plain list to wake an idle consumer's BLMOVE
local FAIR_SEQ_CHARS = 16
local FAIR_MARK = '\0fair:'  -- a lane's list in the delayed sets' registry: '\0fair:<list>'

-- Queue payload as the next job of key: start = max(v, tail[key]), tail[key] = start + 1/weight.
-- The first job of an empty lane also wakes a consumer waiting on the (empty) plain list.
local function fair_push(lane, tails, clock, list, registry, key, weight, payload)
  local v = tonumber(redis.call('HGET', clock, 'v') or '0')
  local start = math.max(v, tonumber(redis.call('ZSCORE', tails, key) or '0'))
  local was_empty = redis.call('ZCARD', lane) == 0
  redis.call('ZADD', tails, start + 1 / weight, key)
  local seq = redis.call('HINCRBY', clock, 'seq', 1)
  redis.call('ZADD', lane, start, string.format('%016x', seq) .. payload)
  redis.call('SADD', registry, FAIR_MARK .. list)
  if was_empty then
    local queued = redis.pcall('LLEN', list)
    if queued == 0 then redis.call('LPUSH', list, FAIR_WAKE) end
  end
  return start
end
