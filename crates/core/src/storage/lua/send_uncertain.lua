-- The outcome is unknown (the connection broke after DATA): never resent blindly; the cap slot
-- stays used; the send waits in the mailbox's uncertain set for the Sent folder to settle it.
-- KEYS: 1 send, 2 due-followup, 3 due-first, 4 inflight, 5 stats, 6 uncertain (the mailbox's)
-- ARGV: 1 member, 2 error, 3 now (ms), 4 attempt id
-- Returns 1 when recorded, 0 when this attempt no longer holds the claim.
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[4] or redis.call('HGET', KEYS[1], 'state') ~= 'SENDING' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'UNCERTAIN', 'error', ARGV[2])
redis.call('HDEL', KEYS[1], 'phase')
redis.call('ZADD', KEYS[6], ARGV[3], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1]); redis.call('ZREM', KEYS[3], ARGV[1]); redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('HINCRBY', KEYS[5], 'uncertain', 1)
return 1
