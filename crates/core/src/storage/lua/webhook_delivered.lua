-- Records a delivery's outcome on its endpoint; the `limit`-th failure in a row disables
-- an enabled endpoint (once: the caller tells the inbox).
-- KEYS: 1 the endpoint's hash
-- ARGV: 1 '1' = delivered (2xx), '0' = failed, 2 now (ms), 3 status code or '', 4 error or '',
--       5 failures in a row that disable it
-- Returns 'delivered', 'failed', 'disabled' (this failure disabled it) or 'gone'.
if redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
redis.call('HSET', KEYS[1], 'last_attempt_at', ARGV[2], 'last_status', ARGV[3], 'last_error', ARGV[4])
if ARGV[1] == '1' then
  redis.call('HSET', KEYS[1], 'consecutive_failures', 0)
  redis.call('HINCRBY', KEYS[1], 'delivered', 1)
  return 'delivered'
end
redis.call('HINCRBY', KEYS[1], 'failed', 1)
local n = redis.call('HINCRBY', KEYS[1], 'consecutive_failures', 1)
if n >= tonumber(ARGV[5]) and redis.call('HGET', KEYS[1], 'enabled') == '1' then
  redis.call('HSET', KEYS[1], 'enabled', '0')
  return 'disabled'
end
return 'failed'
