-- Replace the unacked record of a message with its normalised form (a plain Celery message given
-- its Stalwart header), so a redelivery carries the same header. Only while it is still unacked.
-- KEYS[1] unacked hash. ARGV: tag, record
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
