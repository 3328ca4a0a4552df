-- Sends an UNCERTAIN send again (only for mailboxes whose Sent folder is authoritative, once
-- Sent showed it never went out). Its cap slot goes back: the new attempt reserves its own.
-- KEYS: 1 send, 2 due (its queue), 3 uncertain (the mailbox's), 4 stats, 5 cap (as reserved),
--       6 campaign-day (as reserved, or a placeholder)
-- ARGV: 1 member, 2 now (ms)
-- Returns 1 when requeued, 0 when it is no longer UNCERTAIN.
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('HGET', KEYS[1], 'state') ~= 'UNCERTAIN' then return 0 end
if redis.call('HGET', KEYS[1], 'cap_key') == KEYS[5] and tonumber(redis.call('GET', KEYS[5]) or '0') > 0 then
  redis.call('DECR', KEYS[5])
end
if redis.call('HGET', KEYS[1], 'campaign_day_key') == KEYS[6] and tonumber(redis.call('GET', KEYS[6]) or '0') > 0 then
  redis.call('DECR', KEYS[6])
end
redis.call('HSET', KEYS[1], 'state', 'QUEUED', 'error', 'not found in Sent after the grace period; sending again')
redis.call('HDEL', KEYS[1], 'settled')
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('HINCRBY', KEYS[4], 'uncertain', -1)
return 1
