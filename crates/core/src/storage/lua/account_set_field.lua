-- Sets one field of an existing account (never creates a half account).
-- KEYS: 1 account hash
-- ARGV: 1 field, 2 value
-- Returns 1 when set, 0 when the account does not exist.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
