-- Removes an account, its address index entry and its listing entry.
-- KEYS: 1 account hash, 2 account-emails, 3 accounts
-- ARGV: 1 id
-- Returns 1 when removed, 0 when it did not exist.
local email = redis.call('HGET', KEYS[1], 'email')
if not email then return 0 end
if redis.call('HGET', KEYS[2], email) == ARGV[1] then redis.call('HDEL', KEYS[2], email) end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
