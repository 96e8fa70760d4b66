-- Take the next message of a worker's queue lists and record it unacked, in one step, so a worker
-- killed between taking and recording a message cannot lose it. Also the crash-loop guard and the
-- first line of the decode boundary: an item that cannot be recorded is moved to the quarantine
-- stream (never dropped, never handed out raw), and so is an item fetched more than max_fetches
-- times without being acknowledged (it keeps killing its consumer).
-- KEYS[1] kombu unacked hash; KEYS[2] kombu unacked index zset (seconds); KEYS[3] fetch counts hash;
-- KEYS[4] quarantine stream; KEYS[5..] four keys per queue list, the lists in the order to try
-- (priority steps first, queues in rotation within a step): the list, its fair lane zset, the
-- lane's tails zset and its clock hash (stalwart.store.fair).
-- ARGV[1] max fetches; ARGV[2] max item bytes; ARGV[3] visibility timeout ms (a quarantined item
-- older than that was left by a dead worker); ARGV[4] fetch counts cap; ARGV[5] quarantine cap;
-- ARGV[6] max nesting depth; ARGV[7..] the queue name of each list.
-- A list with a fair lane serves the lane's keys and the plain list (one more key, of weight 1) in
-- start-time fair order; a lane member or lane key that cannot be read is quarantined or skipped
-- like a bad list item or key.
-- A byte-identical copy of a message in flight under the same delivery tag is dropped (see take).
-- Returns false (nothing to take),
--   {'run', list, item, tag, fetches, now_ms}: recorded unacked under tag, or
--   {'quarantine', list, item, reason, detail, entry id, source, now_ms}.
--- @include fair_lane
local now_ms = clock_ms()
local max_fetches = tonumber(ARGV[1])

local function quarantine(list, item, reason, detail, source)
  local id = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'reason', reason,
    'detail', detail, 'list', list, 'item', item, 'source', source)
  if source == '' then source = id end
  return {'quarantine', list, item, reason, detail, id, source, now_ms}
end

local function malformed(list, item, detail)
  return quarantine(list, item, 'malformed', detail, '')
end

local function take(list, queue, item)
  if #item > tonumber(ARGV[2]) then
    return malformed(list, item, 'the item is ' .. #item .. ' bytes, more than the ' .. ARGV[2] .. ' allowed')
  end
  local ok, msg = pcall(cjson.decode, item)
  if not ok then return malformed(list, item, 'not a JSON envelope: ' .. tostring(msg)) end
  if type(msg) ~= 'table' then return malformed(list, item, 'not a kombu envelope: a JSON ' .. type(msg)) end
  local props = msg['properties']
  if type(props) ~= 'table' then return malformed(list, item, 'not a kombu envelope: no properties object') end
  local tag = props['delivery_tag']
  if type(tag) ~= 'string' or tag == '' or #tag > 256 then
    return malformed(list, item, 'not a kombu envelope: no delivery_tag string of 1 to 256 characters')
  end
  local flying = redis.call('HGET', KEYS[1], tag)
  if flying then
    -- The same bytes as the message in flight under this tag (a publish retried after its reply
    -- was lost): dropped, since the one in flight is recorded and comes back if its worker dies.
    -- Other bytes under a tag in flight are a conflict and quarantined.
    if string.sub(flying, 1, #item + 1) == '[' .. item then return {'duplicate'} end
    return malformed(list, item, 'another message with delivery tag ' .. tag .. ' is in flight: a duplicate')
  end
  local fetches = redis.call('HINCRBY', KEYS[3], tag, 1)
  if fetches > max_fetches then
    redis.call('HDEL', KEYS[3], tag)
    return quarantine(list, item, 'poison', 'fetched ' .. (fetches - 1) .. ' times without being acknowledged ' ..
      '(STALWART_MAX_FETCHES=' .. max_fetches .. '): it kills the worker that takes it', tag)
  end
  if fetches == 1 and redis.call('HLEN', KEYS[3]) > tonumber(ARGV[4]) then
    -- A documented cap: counts of messages that were neither acknowledged nor restored (an
    -- operator deleted the unacked hash, say) are forgotten all at once.
    redis.call('DEL', KEYS[3])
    redis.call('HSET', KEYS[3], tag, 1)
  end
  -- kombu's own record: [payload, exchange, routing_key], the payload kept byte for byte, routed
  -- back to the queue it was taken from.
  redis.call('HSET', KEYS[1], tag, '[' .. item .. ',"",' .. cjson.encode(queue) .. ']')
  redis.call('ZADD', KEYS[2], now_ms / 1000, tag)
  return {'run', list, item, tag, fetches, now_ms}
end

-- A quarantined item whose worker died before dead-lettering it comes first.
local stale = redis.call('XRANGE', KEYS[4], '-', tostring(now_ms - tonumber(ARGV[3])), 'COUNT', 1)
if #stale > 0 then
  local old, f = stale[1][1], {}
  for i = 1, #stale[1][2], 2 do f[stale[1][2][i]] = stale[1][2][i + 1] end
  redis.call('XDEL', KEYS[4], old)
  local source = f['source']
  if source == nil or source == '' then source = old end
  return quarantine(f['list'] or '', f['item'] or '', f['reason'] or 'malformed', f['detail'] or '', source)
end

-- The next plain item of a list (wake tokens dropped); nil when empty or another type of key.
local function plain_pop(list)
  while true do
    local item = redis.pcall('RPOP', list)  -- a key of another type is skipped, not fatal
    if type(item) ~= 'string' then return nil end
    if item ~= FAIR_WAKE then return item end
  end
end

-- The lane's head {member, start, v, plain tail}, or nil when it is empty or its keys cannot be read.
local function lane_head(lane, tails, clock)
  local head = redis.pcall('ZRANGE', lane, 0, 0, 'WITHSCORES')
  if type(head) ~= 'table' or head.err or #head == 0 then return nil end
  local state = redis.pcall('HMGET', clock, 'v', 'plain')
  local size = redis.pcall('ZCARD', tails)
  if type(state) ~= 'table' or state.err or type(size) ~= 'number' then return nil end
  return {head[1], lane_number(head[2]), lane_number(state[1]), lane_number(state[2])}
end

-- Serve v: tails at or below it can no more delay anyone and go; an emptied lane forgets its state.
local function advance(lane, tails, clock, v, plain)
  if redis.call('ZCARD', lane) == 0 then
    redis.call('DEL', tails, clock)
    return
  end
  v = lane_number(v)
  local exact = string.format('%.17g', v)  -- tostring keeps 14 digits: v would drift past the tags
  redis.call('HSET', clock, 'v', exact)
  if plain then redis.call('HSET', clock, 'plain', string.format('%.17g', plain)) end
  redis.call('ZREMRANGEBYSCORE', tails, '-inf', exact)
end

-- The next item of one list and its lane: {item} or {nil, bad lane member}; nil when both are empty.
local function next_item(list, lane, tails, clock)
  local head = lane_head(lane, tails, clock)
  if head == nil then
    local item = plain_pop(list)
    return item and {item} or nil
  end
  local member, start, v, plain = head[1], head[2], head[3], head[4]
  local plain_start = math.max(v, plain)
  if plain_start < start then  -- the plain list's turn, if it has anything
    local item = plain_pop(list)
    if item then
      advance(lane, tails, clock, plain_start, plain_start + 1)
      return {item}
    end
  end
  redis.call('ZREM', lane, member)
  advance(lane, tails, clock, math.max(v, start), nil)
  if #member <= FAIR_SEQ_CHARS or not string.find(string.sub(member, 1, FAIR_SEQ_CHARS), '^%x+$') then
    return {nil, member}
  end
  return {string.sub(member, FAIR_SEQ_CHARS + 1)}
end

local lists = (#KEYS - 4) / 4
local i, dropped = 1, 0
while i <= lists do
  local list = KEYS[1 + 4 * i]
  local found = next_item(list, KEYS[2 + 4 * i], KEYS[3 + 4 * i], KEYS[4 + 4 * i])
  if not found then
    i = i + 1
  else
    if found[1] == nil then
      return malformed(list, found[2], 'not a fair lane member: no ' .. FAIR_SEQ_CHARS ..
        '-hex-digit sequence before the payload')
    end
    -- cjson's limits are shared by every script: set them for this decode, then put them back.
    cjson.decode_max_depth(tonumber(ARGV[6]))
    cjson.decode_invalid_numbers(false)
    local ok, res = pcall(take, list, ARGV[6 + i], found[1])
    cjson.decode_max_depth(1000)
    cjson.decode_invalid_numbers(true)
    if not ok then error(res) end
    if res[1] ~= 'duplicate' then return res end
    dropped = dropped + 1
    if dropped >= 100 then return false end  -- a flood of copies: the next fetch goes on
  end
end
return false
