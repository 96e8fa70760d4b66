-- Re-stamp the unacked index entries of messages a live worker holds, on the Redis clock (only
-- entries still there: an acknowledged message is not brought back).
-- KEYS[1] unacked index (seconds). ARGV: delivery tags
local now = clock_ms_exact() / 1000
local n = 0
for i = 1, #ARGV, 500 do
  local args = {}
  for j = i, math.min(i + 499, #ARGV) do
    args[#args + 1] = now
    args[#args + 1] = ARGV[j]
  end
  n = n + redis.call('ZADD', KEYS[1], 'XX', 'CH', unpack(args))
end
return n
