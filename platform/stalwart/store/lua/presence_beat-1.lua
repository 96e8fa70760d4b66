-- A worker says it is alive; workers not heard from for retention_ms are forgotten.
-- KEYS[1] presence hash: hostname -> Redis ms last seen
-- ARGV: hostname, retention_ms, cap (most entries kept: the oldest go first)
-- Returns the number of workers kept.
local now = clock_ms()
redis.call('HSET', KEYS[1], ARGV[1], now)
local cutoff = now - tonumber(ARGV[2])
local fields = redis.call('HGETALL', KEYS[1])
local kept = {}
for i = 1, #fields, 2 do
  if tonumber(fields[i + 1]) == nil or tonumber(fields[i + 1]) < cutoff then
    redis.call('HDEL', KEYS[1], fields[i])
  else
    kept[#kept + 1] = {fields[i], tonumber(fields[i + 1])}
  end
end
local cap = tonumber(ARGV[3])
if #kept > cap then
  table.sort(kept, function(a, b) return a[2] < b[2] end)
  for i = 1, #kept - cap do redis.call('HDEL', KEYS[1], kept[i][1]) end
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return math.min(#kept, cap)
