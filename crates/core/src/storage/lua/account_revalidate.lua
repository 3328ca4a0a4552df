-- Starts a new validation generation.
-- KEYS: 1 account hash
-- Returns the new generation, or -1 when the account does not exist.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[1], 'status', 'PENDING_VALIDATION')
return redis.call('HINCRBY', KEYS[1], 'generation', 1)
