-- A transient failure that provably sent nothing: the cap slot goes back and the send is
-- retried later, or FAILED after the last attempt.
-- KEYS: 1 send, 2 due (the queue it came from), 3 inflight, 4 lead-states, 5 stats, 6 lead-errors,
--       7 cap (as reserved), 8 campaign-day (as reserved, or a placeholder)
-- ARGV: 1 attempt id, 2 member, 3 retry at (ms), 4 max attempts, 5 error, 6 lead id
-- Returns 'retry' | 'failed' | 'stale' (this attempt no longer holds the claim).
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 'SENDING' then return 'stale' end
if redis.call('HGET', KEYS[1], 'cap_key') == KEYS[7] and tonumber(redis.call('GET', KEYS[7]) or '0') > 0 then
  redis.call('DECR', KEYS[7])
end
if redis.call('HGET', KEYS[1], 'campaign_day_key') == KEYS[8] and tonumber(redis.call('GET', KEYS[8]) or '0') > 0 then
  redis.call('DECR', KEYS[8])
end
redis.call('ZREM', KEYS[3], ARGV[2])
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HDEL', KEYS[1], 'phase')
if attempts >= tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'state', 'FAILED', 'error', ARGV[5])
  redis.call('ZREM', KEYS[2], ARGV[2])
  if redis.call('HGET', KEYS[4], ARGV[6]) == 'ACTIVE' then
    redis.call('HSET', KEYS[4], ARGV[6], 'FAILED'); redis.call('HSET', KEYS[6], ARGV[6], ARGV[5])
  end
  redis.call('HINCRBY', KEYS[5], 'failed', 1)
  return 'failed'
end
redis.call('HSET', KEYS[1], 'state', 'QUEUED', 'error', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
return 'retry'
