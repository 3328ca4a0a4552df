-- Queues the first step of each (lead, mailbox) pair whose lead is ACTIVE and not yet assigned.
-- KEYS: 1 lead-states, 2 lead-accounts, then per pair: send (step 0), due-first (of that mailbox)
-- ARGV: 1 due (ms), then per pair: lead id, account id, member
-- Returns how many were queued.
local n = 0
local pairs_n = (#KEYS - 2) / 2
for p = 0, pairs_n - 1 do
  local send, due = KEYS[3 + 2 * p], KEYS[4 + 2 * p]
  local lead, acct, member = ARGV[2 + 3 * p], ARGV[3 + 3 * p], ARGV[4 + 3 * p]
  if redis.call('HGET', KEYS[1], lead) == 'ACTIVE' and redis.call('HSETNX', KEYS[2], lead, acct) == 1 then
    if redis.call('HSETNX', send, 'state', 'QUEUED') == 1 then redis.call('HSET', send, 'attempts', 0, 'account', acct) end
    redis.call('ZADD', due, 'NX', ARGV[1], member)
    n = n + 1
  end
end
return n
