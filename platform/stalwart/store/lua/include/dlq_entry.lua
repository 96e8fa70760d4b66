-- How a dead-letter entry is indexed and removed: included by dlq_add and dlq_remove.
-- KEYS[1] entries hash (id -> json); KEYS[2] index zset (id -> dead-at ms); KEYS[3] stats hash;
-- KEYS[4] sources hash (source -> id); KEYS[5] origins hash (id -> source);
-- KEYS[6] meta hash (id -> [queue, task, reason, cause, dead-at, seq]); KEYS[7] lex zset of index
-- members '<dim>\0<value>\0<inverted dead-at>\0<inverted seq>\0<id>' (dims a=all q=queue t=task
-- r=reason c=cause; seq orders the entries of one millisecond, newest first);
-- KEYS[8] causes hash (cause -> json); KEYS[9] causes by last seen zset; KEYS[10] causes by count
-- zset; KEYS[11] search hash (id -> lower-cased text); KEYS[12] additions per minute (ring of 360)
local DIMS = {'a', 'q', 't', 'r', 'c'}
local TOP = 99999999999999
local function member(dim, value, dead_at, seq, id)
  return dim .. '\0' .. value .. '\0' .. string.format('%014d', TOP - dead_at) .. '\0'
    .. string.format('%014d', TOP - seq) .. '\0' .. id
end
local function dim_values(m)
  return {a = '', q = m[1], t = m[2], r = m[3], c = m[4]}
end
local function member_ms(m, prefix_len)
  return TOP - tonumber(string.sub(m, prefix_len + 1, prefix_len + 14))
end
local function refresh_cause(c)
  local raw = redis.call('HGET', KEYS[8], c)
  if not raw then return end
  local info = cjson.decode(raw)
  info.count = info.count - 1
  if info.count <= 0 then
    redis.call('HDEL', KEYS[8], c)
    redis.call('ZREM', KEYS[9], c)
    redis.call('ZREM', KEYS[10], c)
    return
  end
  local lo, hi = '[c\0' .. c .. '\0', '(c\0' .. c .. '\1'
  local newest = redis.call('ZRANGEBYLEX', KEYS[7], lo, hi, 'LIMIT', 0, 1)[1]
  local oldest = redis.call('ZREVRANGEBYLEX', KEYS[7], hi, lo, 'LIMIT', 0, 1)[1]
  if newest then info.last = member_ms(newest, #c + 3) end
  if oldest then info.first = member_ms(oldest, #c + 3) end
  redis.call('HSET', KEYS[8], c, cjson.encode(info))
  redis.call('ZADD', KEYS[9], info.last, c)
  redis.call('ZADD', KEYS[10], info.count, c)
end
local function remove_entry(id)
  if redis.call('HDEL', KEYS[1], id) == 0 then return false end
  local raw = redis.call('HGET', KEYS[6], id)
  if raw then
    local m = cjson.decode(raw)
    local values = dim_values(m)
    for _, d in ipairs(DIMS) do redis.call('ZREM', KEYS[7], member(d, values[d], m[5], m[6], id)) end
    redis.call('HINCRBY', KEYS[3], 'reason:' .. m[3], -1)
    refresh_cause(m[4])
  end
  local origin = redis.call('HGET', KEYS[5], id)
  if origin and redis.call('HGET', KEYS[4], origin) == id then redis.call('HDEL', KEYS[4], origin) end
  redis.call('HDEL', KEYS[5], id)
  redis.call('HDEL', KEYS[6], id)
  redis.call('HDEL', KEYS[11], id)
  redis.call('ZREM', KEYS[2], id)
  return true
end
