-- Remove dead-letter entries (replayed or purged) from every structure, keeping the per-reason
-- and per-cause counts right. KEYS as dlq_add. ARGV: stat field, ids...
-- Returns how many entries were removed.
--- @include dlq_entry

local removed = 0
for i = 2, #ARGV do
  if remove_entry(ARGV[i]) then removed = removed + 1 end
end
redis.call('HINCRBY', KEYS[3], ARGV[1], removed)
return removed
