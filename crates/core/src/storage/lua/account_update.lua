-- Replaces an account's record (a PATCH) and any new sealed passwords; with ARGV[2] = '1'
-- (connection settings or credentials changed) it starts a new validation generation as
-- PENDING_VALIDATION with a clean connection record, so nothing sends or scans with the
-- new settings before they pass.
-- KEYS: 1 account hash
-- ARGV: 1 record JSON, 2 '1' = validate again, 3.. field/value pairs of sealed passwords
-- Returns the new generation when validating again, 0 when not, -1 when the account is gone.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[1], 'record', ARGV[1])
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
if ARGV[2] ~= '1' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'PENDING_VALIDATION')
redis.call('HDEL', KEYS[1], 'connect_failures_smtp', 'connect_failures_imap', 'reconnect_at', 'reconnect_attempts')
return redis.call('HINCRBY', KEYS[1], 'generation', 1)
