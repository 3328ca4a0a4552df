-- A replica says it watches mailboxes (or, leaving, that it no longer does); replicas
-- whose heartbeat ran out are dropped.
-- KEYS: 1 watchers zset (replica -> heartbeat expiry ms)
-- ARGV: 1 replica name, 2 now ms, 3 expiry ms (0: leaving)
-- Returns the number of live replicas, this one included unless leaving.
if ARGV[3] == '0' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
return redis.call('ZCARD', KEYS[1])
