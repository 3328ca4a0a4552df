-- A send that will never happen (lead stopped, template error): out of the due queues.
-- KEYS: 1 send, 2 due-followup, 3 due-first, 4 lead-states, 5 lead-errors, 6 stats
-- ARGV: 1 member, 2 lead id, 3 new lead state ('' = keep), 4 error
-- Returns 1.
local st = redis.call('HGET', KEYS[1], 'state')
if st == 'QUEUED' then redis.call('HSET', KEYS[1], 'state', 'CANCELLED') end
redis.call('ZREM', KEYS[2], ARGV[1]); redis.call('ZREM', KEYS[3], ARGV[1])
if ARGV[3] ~= '' and redis.call('HGET', KEYS[4], ARGV[2]) == 'ACTIVE' then
  redis.call('HSET', KEYS[4], ARGV[2], ARGV[3]); redis.call('HSET', KEYS[5], ARGV[2], ARGV[4])
  redis.call('HINCRBY', KEYS[6], 'skipped', 1)
end
return 1
