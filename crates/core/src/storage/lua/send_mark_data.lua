-- Records that the body is about to be written: from here on a crash leaves the outcome unknown.
-- For a claim old enough to have been swept; a younger one taken in `pre` is marked by one HDEL
-- of `phase` instead (`Ledger::mark_data_unchecked`: a SENDING record without it is in `data`).
-- KEYS: 1 send
-- ARGV: 1 attempt id
-- Returns 1 when this attempt still holds the claim, 0 when it lost it (nothing may be sent).
local rec = redis.call('HMGET', KEYS[1], 'attempt', 'state')
if rec[1] ~= ARGV[1] or rec[2] ~= 'SENDING' then return 0 end
redis.call('HSET', KEYS[1], 'phase', 'data')
return 1
