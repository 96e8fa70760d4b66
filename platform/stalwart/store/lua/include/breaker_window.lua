-- The breaker's window: a ring of one-second slots with running totals (see breaker_acquire).
local function sweep(key, sec, window)
  local upto = sec - window  -- seconds <= upto are out of the window
  local h = redis.call('HMGET', key, 'swept', 'w')
  local swept = tonumber(h[1] or '')
  if swept == nil or tonumber(h[2] or '') ~= window or upto - swept >= window then
    -- new, idle for a whole window, or counted for another window: start afresh
    redis.call('DEL', key)
    redis.call('HSET', key, 'swept', upto, 'w', window, 'sum:c', 0, 'sum:f', 0, 'sum:s', 0)
    redis.call('PEXPIRE', key, (window + 5) * 1000)
    return
  end
  for t = swept + 1, upto do
    local slot = t % window
    local b = redis.call('HMGET', key, slot .. ':t', slot .. ':c', slot .. ':f', slot .. ':s')
    if tonumber(b[1] or '') == t then
      for i, what in ipairs({'c', 'f', 's'}) do
        local n = tonumber(b[i + 1] or '0')
        if n > 0 then redis.call('HINCRBY', key, 'sum:' .. what, -n) end
      end
    end
  end
  if upto > swept then redis.call('HSET', key, 'swept', upto) end
end
