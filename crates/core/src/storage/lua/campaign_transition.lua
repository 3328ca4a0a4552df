-- Compare-and-set of a campaign's state.
-- KEYS: 1 campaign hash
-- ARGV: 1 expected state, 2 new state
-- Returns {'ok', new}, {'conflict', current} or {'missing'}.
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return {'missing'} end
if cur ~= ARGV[1] then return {'conflict', cur} end
redis.call('HSET', KEYS[1], 'state', ARGV[2])
return {'ok', ARGV[2]}
