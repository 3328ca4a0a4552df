-- Records a validation outcome if it answers the current generation. A failed validation
-- of a DISCONNECTED account keeps it DISCONNECTED (with the new report, still re-validated
-- on its schedule); a passed one makes any account ACTIVE with a clean connection record.
-- KEYS: 1 account hash
-- ARGV: 1 generation, 2 status ('ACTIVE' or 'VALIDATION_FAILED'), 3 report JSON
-- Returns {outcome, status before}: outcome 'stored', 'stale' (a newer generation exists)
-- or 'gone' (deleted meanwhile).
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone', ''} end
local before = redis.call('HGET', KEYS[1], 'status')
if redis.call('HGET', KEYS[1], 'generation') ~= ARGV[1] then return {'stale', before} end
local status = ARGV[2]
if status ~= 'ACTIVE' and before == 'DISCONNECTED' then status = 'DISCONNECTED' end
redis.call('HSET', KEYS[1], 'status', status, 'report', ARGV[3])
if status == 'ACTIVE' then
  redis.call('HDEL', KEYS[1], 'connect_failures_smtp', 'connect_failures_imap', 'reconnect_at', 'reconnect_attempts')
end
return {'stored', before}
