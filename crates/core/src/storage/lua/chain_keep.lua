-- Renews (or, with lease 0, ends) a chain's lease if the token is still the live one.
-- KEYS: 1 chain
-- ARGV: 1 token, 2 lease (ms; '0' = end the chain)
-- Returns 1 when the token holds the chain, 0 when it was superseded.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
