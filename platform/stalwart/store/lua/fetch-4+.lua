-- Take the next message of a worker's queue lists and record it unacked, in one step, so a worker
-- killed between taking and recording a message cannot lose it. Also the crash-loop guard and the
-- first line of the decode boundary: an item that cannot be recorded is moved to the quarantine
-- stream (never dropped, never handed out raw), and so is an item fetched more than max_fetches
-- times without being acknowledged (it keeps killing its consumer).
-- KEYS[1] kombu unacked hash; KEYS[2] kombu unacked index zset (seconds); KEYS[3] fetch counts hash;
-- KEYS[4] quarantine stream; KEYS[5..] queue lists in the order to try (priority steps first,
-- queues in rotation within a step).
-- ARGV[1] max fetches; ARGV[2] max item bytes; ARGV[3] visibility timeout ms (a quarantined item
-- older than that was left by a dead worker); ARGV[4] fetch counts cap; ARGV[5] quarantine cap;
-- ARGV[6] max nesting depth; ARGV[7..] the queue name of each list (KEYS[i] -> ARGV[i + 2]).
-- Returns false (nothing to take),
--   {'run', list, item, tag, fetches, now_ms}: recorded unacked under tag, or
--   {'quarantine', list, item, reason, detail, entry id, source, now_ms}.
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
  if redis.call('HEXISTS', KEYS[1], tag) == 1 then
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

for i = 5, #KEYS do
  local item = redis.pcall('RPOP', KEYS[i])  -- a key of another type is skipped, not fatal
  if type(item) == 'string' then
    -- cjson's limits are shared by every script: set them for this decode, then put them back.
    cjson.decode_max_depth(tonumber(ARGV[6]))
    cjson.decode_invalid_numbers(false)
    local ok, res = pcall(take, KEYS[i], ARGV[i + 2], item)
    cjson.decode_max_depth(1000)
    cjson.decode_invalid_numbers(true)
    if not ok then error(res) end
    return res
  end
end
return false
