-- A done job's link callbacks and chain were sent: a later delivery of it (a duplicate, a copy
-- restored after a blip) returns its result without sending them again.
-- KEYS[1] job hash. Returns 1 when recorded (the job is done), else 0.
if redis.call('HGET', KEYS[1], 'state') ~= 'done' then return 0 end
redis.call('HSET', KEYS[1], 'linked', 1)
return 1
