-- Takes a queued test send for sending, once: a redelivered job finds it taken and sends
-- nothing (a test email is sent at most once, like every other).
-- KEYS: 1 test-send hash
-- Returns 1 when claimed, 0 when it is not queued (taken, done or expired).
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'sending')
return 1
