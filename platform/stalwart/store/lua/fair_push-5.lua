-- Queue a message in its queue list's fair lane as the next job of its fair_by key.
-- KEYS[1] lane zset; KEYS[2] tails zset; KEYS[3] clock hash; KEYS[4] the plain queue list (woken
-- when the lane was empty); KEYS[5] the delayed sets' registry (the lane's list is in it, marked).
-- ARGV: fair key, weight (> 0), payload. Returns the start tag.
--- @include fair_lane
return tostring(fair_push(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], tonumber(ARGV[2]), ARGV[3]))
