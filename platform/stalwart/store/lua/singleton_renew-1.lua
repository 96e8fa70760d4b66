-- Extend a running job's lease on its key's run slot. A slot found free (the state store lost
-- it) is taken back; one another job took after this lease ran out is lost.
-- KEYS[1] singleton hash; ARGV: lease token, lease_ms, ttl_ms
-- Returns 1 renewed | 2 taken back | 0 lost
local now = clock_ms()
local holder = redis.call('HGET', KEYS[1], 'holder')
local code = 1
if holder ~= ARGV[1] then
  if holder and tonumber(redis.call('HGET', KEYS[1], 'until') or '0') > now then return 0 end
  code = 2
end
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'until', now + tonumber(ARGV[2]))
if code == 2 then redis.call('HSET', KEYS[1], 'since', now) end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return code
