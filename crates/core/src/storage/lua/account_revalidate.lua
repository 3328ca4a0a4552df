-- Starts a new validation generation. A DISCONNECTED account stays DISCONNECTED until
-- the validation passes (it keeps telling why it stopped); any other is PENDING_VALIDATION.
-- KEYS: 1 account hash
-- Returns the new generation, or -1 when the account does not exist.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HGET', KEYS[1], 'status') ~= 'DISCONNECTED' then
  redis.call('HSET', KEYS[1], 'status', 'PENDING_VALIDATION')
end
return redis.call('HINCRBY', KEYS[1], 'generation', 1)
