-- Counts a failure to connect to or sign in at an ACTIVE account's SMTP or IMAP server (a
-- send or a scan); the `limit`-th in a row for that protocol marks the account DISCONNECTED
-- with the failure as its report and its first automatic re-validation due at ARGV[3]. A
-- session opened with that protocol in between (HDEL of its field) starts the count over.
-- KEYS: 1 account hash
-- ARGV: 1 limit, 2 report JSON, 3 first re-validation at (ms), 4 the protocol's count field
-- Returns {'counted', failures in a row}, {'disconnected', failures}, {'inactive', 0}
-- (not ACTIVE: nothing to count) or {'gone', 0}.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone', 0} end
if redis.call('HGET', KEYS[1], 'status') ~= 'ACTIVE' then return {'inactive', 0} end
local n = redis.call('HINCRBY', KEYS[1], ARGV[4], 1)
if n < tonumber(ARGV[1]) then return {'counted', n} end
redis.call('HSET', KEYS[1], 'status', 'DISCONNECTED', 'report', ARGV[2], 'reconnect_at', ARGV[3],
  'reconnect_attempts', 0)
redis.call('HDEL', KEYS[1], 'connect_failures_smtp', 'connect_failures_imap')
return {'disconnected', n}
