-- Records an accepted send and queues the lead's next step (if the lead is still ACTIVE).
-- Only the attempt holding the claim records (SENDING, or UNCERTAIN after a sweep); an empty
-- attempt is a confirmation from the Sent folder, which settles an UNCERTAIN send or marks a
-- SENT one confirmed.
-- KEYS: 1 send, 2 due-followup, 3 due-first, 4 inflight, 5 message-ids, 6 stats, 7 lead-states,
--       8 next step's send, 9 lead-progress, 10 uncertain (the mailbox's), 11 the webhook outbox,
--       12 the mailbox's recent sends (for its bounce rate), 13 the mailbox's sends per hour of
--       the send's UTC day, 14 the webhook endpoints (the outbox is written only while one
--       exists), then for the peek, per campaign the mailbox may send for (in the dispatch
--       loop's order): its due-followup, its due-first and its leads
-- ARGV: 1 attempt id ('' = Sent-folder confirmation), 2 member, 3 Message-ID, 4 now (ms), 5 lead id,
--       6 next step's member ('' = last step), 7 next step due (ms),
--       8 the `sent` event (JSON), 9 the lead's `lead_state` COMPLETED event (JSON; '' unless ARGV[6] is),
--       10 the step's `sent` field in the stats hash, 11 the send's UTC hour (0-23),
--       12 peek: '' or a time (ms) — after recording, return the mailbox's next sends due by
--       then among the peek's campaigns, in the order `Ledger::next_due` would pick them (due
--       follow-ups first, then first steps, each earliest first, the first campaign winning a
--       tie), with their leads, so the loop's next emails need no read of their own, 13 the
--       send's step (0: it waits in due-first, else in due-followup), 14 how many to peek at
-- Events are published in the same step as the change they tell, so none is lost; an outbox
-- entry holds its first in `event` and, when one step tells two, the second in `then`.
-- Returns {outcome, then per peeked send: member, its due (ms), '1' if a follow-up, the lead's
-- JSON ('' if gone)}; outcome 'recorded' | 'confirmed' (already SENT, now confirmed) |
-- 'duplicate' | 'stale'.
local rec = redis.call('HMGET', KEYS[1], 'state', 'attempt', 'error', 'settled')
local st = rec[1]
local confirming = ARGV[1] == ''
if st == 'SENT' then
  if confirming then redis.call('HSET', KEYS[1], 'confirmed', 1); return {'confirmed'} end
  return {'duplicate'}
end
if confirming then
  if st ~= 'UNCERTAIN' then return {'stale'} end
else
  if rec[2] ~= ARGV[1] or (st ~= 'SENDING' and st ~= 'UNCERTAIN') then
    return {'stale'}
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
-- `phase` stays: it only means something while SENDING. An earlier attempt's error goes.
if rec[3] or rec[4] then redis.call('HDEL', KEYS[1], 'error', 'settled') end
-- A first step waits in due-first, a follow-up in due-followup: only that one holds it.
if ARGV[13] == '0' then redis.call('ZREM', KEYS[3], ARGV[2]) else redis.call('ZREM', KEYS[2], ARGV[2]) end
redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('HSET', KEYS[5], ARGV[3], ARGV[2])
-- The campaign's total is the sum of its steps' counters. (Constants go to redis.call as
-- strings: a Lua number is formatted by printf on every call.)
redis.call('HINCRBY', KEYS[6], ARGV[10], '1')
redis.call('HINCRBY', KEYS[9], ARGV[5], '1')
-- Trimmed back to 1,000 once it passes 1,100 (not on every send).
if redis.call('LPUSH', KEYS[12], ARGV[2]) > 1100 then redis.call('LTRIM', KEYS[12], 0, 999) end
-- The day's counters expire 8 days after its last hour's first send.
if redis.call('HINCRBY', KEYS[13], ARGV[11], '1') == 1 then
  redis.call('EXPIRE', KEYS[13], 691200)
end
local completed = false
if redis.call('HGET', KEYS[7], ARGV[5]) == 'ACTIVE' then
  if ARGV[6] == '' then
    redis.call('HSET', KEYS[7], ARGV[5], 'COMPLETED')
    completed = true
  else
    -- A queued record is its state alone: no attempts yet, the mailbox is the lead's.
    redis.call('HSETNX', KEYS[8], 'state', 'QUEUED')
    redis.call('ZADD', KEYS[2], 'NX', ARGV[7], ARGV[6])
  end
end
-- The step's events are one outbox entry: `sent`, then the lead's COMPLETED if it was; none
-- while no webhook endpoint exists (nobody could receive them).
if redis.call('EXISTS', KEYS[14]) == 1 then
  if completed then
    redis.call('XADD', KEYS[11], 'MAXLEN', '~', '100000', '*', 'event', ARGV[8], 'then', ARGV[9])
  else
    redis.call('XADD', KEYS[11], 'MAXLEN', '~', '100000', '*', 'event', ARGV[8])
  end
end
if ARGV[12] == '' then return {'recorded'} end
-- The peek: up to ARGV[14] sends due by ARGV[12], in the order `Ledger::next_due` picks them.
local campaigns = (#KEYS - 14) / 3
local want = tonumber(ARGV[14])
local picked = {}
-- pass 0 takes due follow-ups (offset 15), pass 1 first steps (offset 16), while wanted.
for pass = 0, 1 do
  if #picked < want then
    local heads = {}
    for i = 0, campaigns - 1 do
      local got = redis.call('ZRANGEBYSCORE', KEYS[15 + 3 * i + pass], '-inf', ARGV[12], 'WITHSCORES', 'LIMIT', 0, want - #picked)
      for j = 1, #got, 2 do heads[#heads + 1] = {got[j], got[j + 1], tonumber(got[j + 1]), i, j} end
    end
    -- Earliest first; on a tie the first campaign, then the zset's own order.
    table.sort(heads, function(a, b)
      if a[3] ~= b[3] then return a[3] < b[3] end
      if a[4] ~= b[4] then return a[4] < b[4] end
      return a[5] < b[5]
    end)
    for _, h in ipairs(heads) do
      if #picked < want then picked[#picked + 1] = {h[1], h[2], tostring(1 - pass), h[4]} end
    end
  end
end
-- Their leads: one HMGET per campaign. A member is <campaign>:<lead>:<step>.
local out = {'recorded'}
local by_campaign = {}
for n, p in ipairs(picked) do
  local lead = string.match(p[1], '^[^:]+:([^:]+):') or ''
  local c = by_campaign[p[4]]
  if not c then
    c = {leads = {}, at = {}}
    by_campaign[p[4]] = c
  end
  c.leads[#c.leads + 1] = lead
  c.at[#c.at + 1] = n
  out[4 * n - 2], out[4 * n - 1], out[4 * n], out[4 * n + 1] = p[1], p[2], p[3], ''
end
for i, c in pairs(by_campaign) do
  local json = redis.call('HMGET', KEYS[17 + 3 * i], unpack(c.leads))
  for k, n in ipairs(c.at) do out[4 * n + 1] = json[k] or '' end
end
return out
