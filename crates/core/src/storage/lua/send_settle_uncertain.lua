-- Settles an UNCERTAIN send without resending it (the mailbox's Sent folder cannot prove it
-- absent): it stays UNCERTAIN (and counted), leaves the uncertain set, and the lead's sequence
-- goes on as if it had been delivered - a missing email is better than a duplicate.
-- KEYS: 1 send, 2 uncertain (the mailbox's), 3 lead-states, 4 next step's send, 5 due-followup,
--       6 lead-errors
-- ARGV: 1 member, 2 lead id, 3 next step's member ('' = last step), 4 next step due (ms),
--       5 note
-- Returns 1 when settled, 0 when it is no longer UNCERTAIN or was settled before.
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[1], 'state') ~= 'UNCERTAIN' then return 0 end
if redis.call('HEXISTS', KEYS[1], 'settled') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'settled', 'not_resent', 'error', ARGV[5])
if redis.call('HGET', KEYS[3], ARGV[2]) == 'ACTIVE' then
  redis.call('HSET', KEYS[6], ARGV[2], ARGV[5])
  if ARGV[3] == '' then
    redis.call('HSET', KEYS[3], ARGV[2], 'COMPLETED')
  else
    redis.call('HSETNX', KEYS[4], 'state', 'QUEUED')
    redis.call('ZADD', KEYS[5], 'NX', ARGV[4], ARGV[3])
  end
end
return 1
