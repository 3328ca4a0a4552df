-- Erases a lead nothing was sent to yet (no step claimed); a lead whose thread started is
-- left for the caller to stop instead (a lead with sends is never erased).
-- KEYS: 1 leads, 2 lead-states, 3 lead-errors, 4 lead-accounts, 5 send (step 0),
--       6 due-first of its mailbox ('' mailbox: any key)
-- ARGV: 1 lead id, 2 its mailbox as read before ('' = none), 3 member
-- Returns 'erased', 'started', 'missing' or 'moved' (its mailbox changed: read again).
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 'missing' end
if (redis.call('HGET', KEYS[4], ARGV[1]) or '') ~= ARGV[2] then return 'moved' end
local st = redis.call('HGET', KEYS[5], 'state')
if st and st ~= 'QUEUED' and st ~= 'CANCELLED' then return 'started' end
redis.call('HDEL', KEYS[1], ARGV[1]); redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1]); redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('DEL', KEYS[5])
if ARGV[2] ~= '' then redis.call('ZREM', KEYS[6], ARGV[3]) end
return 'erased'
