-- Records that the body is about to be written: from here on a crash leaves the outcome unknown.
-- KEYS: 1 send
-- ARGV: 1 attempt id
-- Returns 1 when this attempt still holds the claim, 0 when it lost it (nothing may be sent).
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 'SENDING' then return 0 end
redis.call('HSET', KEYS[1], 'phase', 'data')
return 1
