-- Counts one test email against the mailbox's daily cap, if the cap has room (the same
-- counter the send ledger's reserve uses, so tests and campaigns share one cap).
-- KEYS: 1 the mailbox's cap counter for its local day
-- ARGV: 1 effective cap, 2 counter lifetime (s)
-- Returns 1 when counted, 0 when the cap is spent.
if tonumber(redis.call('GET', KEYS[1]) or '0') >= tonumber(ARGV[1]) then return 0 end
if redis.call('INCR', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 1
