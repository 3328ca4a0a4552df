-- Removes a webhook endpoint and its record.
-- KEYS: 1 webhooks (hash), 2 the endpoint's hash
-- ARGV: 1 endpoint id
-- Returns 1 when removed, 0 when it did not exist.
local n = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return n
