-- One page of dead-letter entry ids, newest first, matching a filter, walked from a cursor.
-- KEYS[1] lex zset (see dlq_add); KEYS[2] meta hash; KEYS[3] search hash
-- ARGV: filters json {q, t, r, c: index values}, since ms (-1 none), until ms (-1 none),
--       cursor ('<inverted dead-at>\0<inverted seq>\0<id>' of the previous page's last entry,
--       '' = start),
--       count, scan budget (index members examined at most), search needle ('' = none, lower case)
-- The walk follows the narrowest filtered dimension (fewest members in the time range) and checks
-- the other filters on each entry's meta. Returns {ids, next cursor ('' = no more), exact total
-- of matches (-1 when unknown: several filters or a search), members scanned}.
local filters = cjson.decode(ARGV[1])
local since, until_ms = tonumber(ARGV[2]), tonumber(ARGV[3])
local cursor, count, budget, needle = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local TOP = 99999999999999

local function prefix(dim, value) return dim .. '\0' .. value .. '\0' end
local function bounds(dim, value)
  local p = prefix(dim, value)
  local lo = until_ms >= 0 and ('[' .. p .. string.format('%014d', TOP - until_ms)) or ('[' .. p)
  local hi = since >= 0 and ('[' .. p .. string.format('%014d', TOP - since) .. '\1')
    or ('(' .. dim .. '\0' .. value .. '\1')
  return lo, hi
end

local walk, walk_value, walk_n, given = 'a', '', nil, 0
for _, d in ipairs({'q', 't', 'r', 'c'}) do
  local v = filters[d]
  if type(v) == 'string' then
    given = given + 1
    local n = redis.call('ZLEXCOUNT', KEYS[1], bounds(d, v))
    if walk_n == nil or n < walk_n then walk, walk_value, walk_n = d, v, n end
  end
end
local lo, hi = bounds(walk, walk_value)
if walk_n == nil then walk_n = redis.call('ZLEXCOUNT', KEYS[1], lo, hi) end
local total = (given <= 1 and needle == '') and walk_n or -1
if cursor ~= '' then lo = '(' .. prefix(walk, walk_value) .. cursor end

local function matches(id)
  if given > 1 then
    local raw = redis.call('HGET', KEYS[2], id)
    if not raw then return false end
    local m = cjson.decode(raw)
    local have = {q = m[1], t = m[2], r = m[3], c = m[4]}
    for d, v in pairs(filters) do
      if type(v) == 'string' and have[d] ~= v then return false end
    end
  end
  if needle ~= '' then
    local text = redis.call('HGET', KEYS[3], id)
    if not text or not string.find(text, needle, 1, true) then return false end
  end
  return true
end

local plen = #prefix(walk, walk_value)
local ids, scanned, last, finished = {}, 0, '', false
while #ids < count and scanned < budget do
  local chunk = math.min(budget - scanned, math.max(count - #ids, 100))
  local members = redis.call('ZRANGEBYLEX', KEYS[1], lo, hi, 'LIMIT', 0, chunk)
  if #members == 0 then finished = true break end
  for _, m in ipairs(members) do
    scanned = scanned + 1
    last = string.sub(m, plen + 1)
    local id = string.sub(last, 31)
    if matches(id) then
      ids[#ids + 1] = id
      if #ids >= count then break end
    end
  end
  lo = '(' .. prefix(walk, walk_value) .. last
  if #members < chunk and #ids < count then finished = true break end
end
if not finished and #ids >= count then
  -- a full page: there may be more, unless nothing follows the last entry
  if #redis.call('ZRANGEBYLEX', KEYS[1], lo, hi, 'LIMIT', 0, 1) == 0 then finished = true end
end
return {ids, finished and '' or last, total, scanned}
