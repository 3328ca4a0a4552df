-- Creates a sender account unless its address (lower-cased) is taken.
-- KEYS: 1 account hash, 2 account-emails (address -> id), 3 accounts (zset by creation)
-- ARGV: 1 id, 2 address (lower-case), 3 record JSON, 4 created (ms),
--       5.. pairs of (secret field, sealed value): smtp_password + imap_password, or
--       oauth_refresh (+ oauth_client_secret)
-- Returns {1, id} when created, {0, existing id} when the address is taken.
local existing = redis.call('HGET', KEYS[2], ARGV[2])
if existing then return {0, existing} end
redis.call('HSET', KEYS[1], 'record', ARGV[3], 'email', ARGV[2], 'status', 'PENDING_VALIDATION', 'generation', 1)
for i = 5, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
return {1, ARGV[1]}
