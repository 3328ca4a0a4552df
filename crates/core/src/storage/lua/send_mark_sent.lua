-- Records an accepted send and queues the lead's next step (if the lead is still ACTIVE).
-- Only the attempt holding the claim records (SENDING, or UNCERTAIN after a sweep); an empty
-- attempt is a confirmation from the Sent folder, which settles an UNCERTAIN send or marks a
-- SENT one confirmed.
-- KEYS: 1 send, 2 due-followup, 3 due-first, 4 inflight, 5 message-ids, 6 stats, 7 lead-states,
--       8 next step's send, 9 lead-progress, 10 uncertain (the mailbox's), 11 the webhook outbox,
--       12 the mailbox's recent sends (for its bounce rate), 13 the mailbox's sends per hour of
--       the send's UTC day, then for the peek, per campaign the mailbox may send for (in the
--       dispatch loop's order): its due-followup, its due-first and its leads
-- ARGV: 1 attempt id ('' = Sent-folder confirmation), 2 member, 3 Message-ID, 4 now (ms), 5 lead id,
--       6 next step's member ('' = last step), 7 next step due (ms), 8 account id,
--       9 the `sent` event (JSON), 10 the lead's `lead_state` COMPLETED event (JSON),
--       11 the step's `sent` field in the stats hash, 12 the send's UTC hour (0-23),
--       13 peek: '' or a time (ms) — after recording, return the mailbox's next send due by
--       then among the peek's campaigns, picked as `Ledger::next_due` picks (due follow-ups
--       first, then first steps, each earliest first, the first campaign winning a tie), with
--       its lead, so the loop's next email needs no read of its own, 14 the send's step (0: it
--       waits in due-first, else in due-followup)
-- Events are published in the same step as the change they tell, so none is lost.
-- Returns {outcome, next member, its due (ms), 1 if a follow-up, the lead's JSON} ('' / 0 when
-- nothing was peeked); outcome 'recorded' | 'confirmed' (already SENT, now confirmed) |
-- 'duplicate' | 'stale'.
local rec = redis.call('HMGET', KEYS[1], 'state', 'attempt')
local st = rec[1]
local confirming = ARGV[1] == ''
if st == 'SENT' then
  if confirming then redis.call('HSET', KEYS[1], 'confirmed', 1); return {'confirmed', '', 0, 0, ''} end
  return {'duplicate', '', 0, 0, ''}
end
if confirming then
  if st ~= 'UNCERTAIN' then return {'stale', '', 0, 0, ''} end
else
  if rec[2] ~= ARGV[1] or (st ~= 'SENDING' and st ~= 'UNCERTAIN') then
    return {'stale', '', 0, 0, ''}
  end
end
if st == 'UNCERTAIN' then
  redis.call('ZREM', KEYS[10], ARGV[2])
  redis.call('HINCRBY', KEYS[6], 'uncertain', -1)
end
if confirming then
  redis.call('HSET', KEYS[1], 'state', 'SENT', 'message_id', ARGV[3], 'sent_at', ARGV[4], 'confirmed', 1)
else
  redis.call('HSET', KEYS[1], 'state', 'SENT', 'message_id', ARGV[3], 'sent_at', ARGV[4])
end
redis.call('HDEL', KEYS[1], 'phase', 'error', 'settled')
-- A first step waits in due-first, a follow-up in due-followup: only that one holds it.
if ARGV[14] == '0' then redis.call('ZREM', KEYS[3], ARGV[2]) else redis.call('ZREM', KEYS[2], ARGV[2]) end
redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('HSET', KEYS[5], ARGV[3], ARGV[2])
redis.call('HINCRBY', KEYS[6], 'sent', 1)
redis.call('HINCRBY', KEYS[6], ARGV[11], 1)
redis.call('HINCRBY', KEYS[9], ARGV[5], 1)
redis.call('XADD', KEYS[11], 'MAXLEN', '~', 100000, '*', 'event', ARGV[9])
-- Trimmed back to 1,000 once it passes 1,100 (not on every send).
if redis.call('LPUSH', KEYS[12], ARGV[2]) > 1100 then redis.call('LTRIM', KEYS[12], 0, 999) end
-- The day's counters expire 8 days after its last hour's first send.
if redis.call('HINCRBY', KEYS[13], ARGV[12], 1) == 1 then
  redis.call('EXPIRE', KEYS[13], 691200)
end
if redis.call('HGET', KEYS[7], ARGV[5]) == 'ACTIVE' then
  if ARGV[6] == '' then
    redis.call('HSET', KEYS[7], ARGV[5], 'COMPLETED')
    redis.call('XADD', KEYS[11], 'MAXLEN', '~', 100000, '*', 'event', ARGV[10])
  else
    if redis.call('HSETNX', KEYS[8], 'state', 'QUEUED') == 1 then
      redis.call('HSET', KEYS[8], 'attempts', 0, 'account', ARGV[8])
    end
    redis.call('ZADD', KEYS[2], 'NX', ARGV[7], ARGV[6])
  end
end
if ARGV[13] ~= '' then
  local campaigns = (#KEYS - 13) / 3
  -- pass 0 looks at due follow-ups (offset 14), pass 1 at first steps (offset 15).
  for pass = 0, 1 do
    local best, best_score, best_number, best_at = nil, '', 0, 0
    for i = 0, campaigns - 1 do
      local head = redis.call('ZRANGEBYSCORE', KEYS[14 + 3 * i + pass], '-inf', ARGV[13], 'WITHSCORES', 'LIMIT', 0, 1)
      if #head > 0 and (best == nil or tonumber(head[2]) < best_number) then
        best, best_score, best_number, best_at = head[1], head[2], tonumber(head[2]), i
      end
    end
    if best then
      -- A member is <campaign>:<lead>:<step>.
      local lead = string.match(best, '^[^:]+:([^:]+):')
      local json = lead and redis.call('HGET', KEYS[16 + 3 * best_at], lead)
      return {'recorded', best, best_score, 1 - pass, json or ''}
    end
  end
end
return {'recorded', '', 0, 0, ''}
