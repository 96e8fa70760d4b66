-- Take the oldest message of a queue list and record it as unacked in the same step, so a
-- worker killed between taking and recording a message cannot lose it (kombu's BRPOP can).
-- KEYS[1] queue list; KEYS[2] kombu unacked hash; KEYS[3] kombu unacked index zset
-- Returns {payload, 1} when recorded, {payload, 0} for an item that is not a kombu envelope
-- (the malformed guard handles it), or false when the list is empty.
local item = redis.call('RPOP', KEYS[1])
if not item then return false end
local ok, msg = pcall(cjson.decode, item)
if not ok or type(msg) ~= 'table' or type(msg.properties) ~= 'table' then return {item, 0} end
local props = msg.properties
local info = type(props.delivery_info) == 'table' and props.delivery_info or {}
local tag = props.delivery_tag
if type(tag) ~= 'string' then return {item, 0} end
local now = clock_s()
-- kombu's own record: [payload, exchange, routing_key]; the payload is kept byte for byte.
local record = '[' .. item .. ',' .. cjson.encode(info.exchange or '') .. ',' ..
  cjson.encode(info.routing_key or '') .. ']'
redis.call('HSET', KEYS[2], tag, record)
redis.call('ZADD', KEYS[3], now, tag)
return {item, 1}
