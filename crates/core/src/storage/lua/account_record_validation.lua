-- Records a validation outcome if it answers the current generation.
-- KEYS: 1 account hash
-- ARGV: 1 generation, 2 status, 3 report JSON
-- Returns 'stored', 'stale' (a newer generation exists) or 'gone' (deleted meanwhile).
if redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
if redis.call('HGET', KEYS[1], 'generation') ~= ARGV[1] then return 'stale' end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'report', ARGV[3])
return 'stored'
