-- Sets a lead's state, optionally only from one state, optionally with an error.
-- KEYS: 1 lead-states, 2 lead-errors
-- ARGV: 1 lead id, 2 new state, 3 required current state ('' = any), 4 error ('' = none)
-- Returns 1 when changed, 0 otherwise.
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 0 end
if ARGV[3] ~= '' and cur ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[2], ARGV[1], ARGV[4]) end
return 1
