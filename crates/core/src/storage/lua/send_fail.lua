-- A permanent refusal: never retried; the cap slot goes back (nothing was accepted).
-- KEYS: 1 send, 2 due-followup, 3 due-first, 4 inflight, 5 lead-states, 6 lead-errors, 7 stats,
--       8 suppression, 9 cap (as reserved), 10 campaign-day (as reserved, or a placeholder),
--       11 the webhook outbox, 12 the mailbox's recent sends (a bounce counts as one),
--       13 the webhook endpoints (the outbox is written only while one exists)
-- ARGV: 1 attempt id, 2 member, 3 error, 4 lead id, 5 new lead state, 6 address to suppress ('' = none),
--       7 stats counter, 8 the lead's `lead_state` event (JSON), published with the change,
--       9 the step's counter field in the stats hash
-- Returns 1 when recorded, 0 when this attempt no longer holds the claim.
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 'SENDING' then return 0 end
if redis.call('HGET', KEYS[1], 'cap_key') == KEYS[9] and tonumber(redis.call('GET', KEYS[9]) or '0') > 0 then
  redis.call('DECR', KEYS[9])
end
if redis.call('HGET', KEYS[1], 'campaign_day_key') == KEYS[10] and tonumber(redis.call('GET', KEYS[10]) or '0') > 0 then
  redis.call('DECR', KEYS[10])
end
redis.call('HSET', KEYS[1], 'state', 'FAILED', 'error', ARGV[3])
redis.call('HDEL', KEYS[1], 'phase')
redis.call('ZREM', KEYS[2], ARGV[2]); redis.call('ZREM', KEYS[3], ARGV[2]); redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('HSET', KEYS[5], ARGV[4], ARGV[5]); redis.call('HSET', KEYS[6], ARGV[4], ARGV[3])
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[8], ARGV[6], 'hard_bounce')
  redis.call('LPUSH', KEYS[12], ARGV[2])
  redis.call('LTRIM', KEYS[12], 0, 999)
end
redis.call('HINCRBY', KEYS[7], ARGV[7], 1)
redis.call('HINCRBY', KEYS[7], ARGV[9], 1)
if redis.call('EXISTS', KEYS[13]) == 1 then
  redis.call('XADD', KEYS[11], 'MAXLEN', '~', '100000', '*', 'event', ARGV[8])
end
return 1
