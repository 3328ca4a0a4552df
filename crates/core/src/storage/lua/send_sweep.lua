-- Resolves a send a dead worker left SENDING: requeued (cap slot back) if it never reached
-- DATA, else UNCERTAIN. The caller read the record's account and counter keys first and passes
-- them; if the record changed since, nothing happens ('changed') and the next sweep retries.
-- KEYS: 1 send, 2 inflight, 3 stats, 4 cap (as reserved), 5 campaign-day (as reserved, or a
--       placeholder), 6 uncertain (of the record's mailbox)
-- ARGV: 1 member, 2 now (ms), 3 account id as read, 4 cap key as read, 5 campaign-day key as read
-- Returns 'requeued' | 'uncertain' | 'gone' (no longer SENDING) | 'changed'.
if redis.call('HGET', KEYS[1], 'state') ~= 'SENDING' then redis.call('ZREM', KEYS[2], ARGV[1]); return 'gone' end
if redis.call('HGET', KEYS[1], 'account') ~= ARGV[3]
  or (redis.call('HGET', KEYS[1], 'cap_key') or '') ~= ARGV[4]
  or (redis.call('HGET', KEYS[1], 'campaign_day_key') or '') ~= ARGV[5] then
  return 'changed'
end
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[1], 'phase') == 'pre' then
  if ARGV[4] ~= '' and tonumber(redis.call('GET', KEYS[4]) or '0') > 0 then redis.call('DECR', KEYS[4]) end
  if ARGV[5] ~= '' and tonumber(redis.call('GET', KEYS[5]) or '0') > 0 then redis.call('DECR', KEYS[5]) end
  redis.call('HSET', KEYS[1], 'state', 'QUEUED', 'error', 'worker stopped before DATA; requeued')
  redis.call('HDEL', KEYS[1], 'phase')
  return 'requeued'
end
redis.call('HSET', KEYS[1], 'state', 'UNCERTAIN', 'error', 'worker stopped during DATA; outcome unknown')
redis.call('HDEL', KEYS[1], 'phase')
redis.call('HINCRBY', KEYS[3], 'uncertain', 1)
redis.call('ZADD', KEYS[6], ARGV[2], ARGV[1])
return 'uncertain'
