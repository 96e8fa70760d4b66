-- Append one operator action to the audit log, stamped with the Redis clock, and cap the log.
-- KEYS[1] audit list (newest first)
-- ARGV: record json (who, action, what, count, detail), max records
-- Returns the time (ms) the action was recorded at.
local now = clock_ms()
local record = cjson.decode(ARGV[1])
record.at = now
redis.call('LPUSH', KEYS[1], cjson.encode(record))
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
return now
