-- Moves a lead whose first step has not started from one mailbox to another (its mailbox
-- is being deleted). A lead whose thread has started stays: follow-ups must come from the
-- mailbox that sent the first step. The claim on the send record stays the only way a
-- step is sent, so a send the old mailbox claimed first is never sent twice.
-- KEYS: 1 lead-accounts, 2 send (step 0), 3 due-first of the old mailbox, 4 due-first of the new
-- ARGV: 1 lead id, 2 old account, 3 new account, 4 member
-- Returns 'moved', 'started' (the first step was claimed or sent) or 'elsewhere'.
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 'elsewhere' end
if redis.call('HGET', KEYS[2], 'state') ~= 'QUEUED' then return 'started' end
local score = redis.call('ZSCORE', KEYS[3], ARGV[4])
redis.call('ZREM', KEYS[3], ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], 'account', ARGV[3])
if score then redis.call('ZADD', KEYS[4], score, ARGV[4]) end
return 'moved'
