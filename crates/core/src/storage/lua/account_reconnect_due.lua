-- Starts an automatic re-validation of a DISCONNECTED account when its time has come,
-- and moves the next one out (doubling from ARGV[2] up to ARGV[3]). Every replica's sweep
-- calls this; only one of them gets the generation for a given due time.
-- KEYS: 1 account hash
-- ARGV: 1 now (ms), 2 first delay (ms), 3 longest delay (ms)
-- Returns the new validation generation, or -1 when nothing is due.
if redis.call('HGET', KEYS[1], 'status') ~= 'DISCONNECTED' then return -1 end
local now = tonumber(ARGV[1])
if tonumber(redis.call('HGET', KEYS[1], 'reconnect_at') or '0') > now then return -1 end
local attempts = redis.call('HINCRBY', KEYS[1], 'reconnect_attempts', 1)
local delay = math.min(tonumber(ARGV[2]) * 2 ^ math.min(attempts, 30), tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], 'reconnect_at', string.format('%d', now + delay))
return redis.call('HINCRBY', KEYS[1], 'generation', 1)
