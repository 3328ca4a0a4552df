-- Creates a sender account unless its address (lower-cased) is taken.
-- KEYS: 1 account hash, 2 account-emails (address -> id), 3 accounts (zset by creation)
-- ARGV: 1 id, 2 address (lower-case), 3 record JSON, 4 sealed SMTP password, 5 sealed IMAP password,
--       6 created (ms)
-- Returns {1, id} when created, {0, existing id} when the address is taken.
local existing = redis.call('HGET', KEYS[2], ARGV[2])
if existing then return {0, existing} end
redis.call('HSET', KEYS[1], 'record', ARGV[3], 'email', ARGV[2], 'smtp_password', ARGV[4],
  'imap_password', ARGV[5], 'status', 'PENDING_VALIDATION', 'generation', 1)
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[1])
return {1, ARGV[1]}
