-- Makes a token the live chain of a mailbox (dispatch or scan).
-- KEYS: 1 chain
-- ARGV: 1 token, 2 lease (ms), 3 '1' = only if no chain is alive, '0' = replace any
-- Returns 1 when the token is now the chain, 0 when a live chain was kept.
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
