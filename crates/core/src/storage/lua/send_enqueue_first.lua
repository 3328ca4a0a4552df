-- Queues the first step of each (lead, mailbox) pair whose lead is ACTIVE and not yet assigned.
-- KEYS: 1 lead-states, 2 lead-accounts, then per pair: send (step 0), due-first (of that mailbox)
-- ARGV: 1 due (ms), then per pair: lead id, account id, member
-- Returns how many were queued.
-- One read of every lead's state and one ZADD per mailbox, not one of each per lead.
local pairs_n = (#KEYS - 2) / 2
local leads = {}
for p = 0, pairs_n - 1 do leads[p + 1] = ARGV[2 + 3 * p] end
local states = {}
if pairs_n > 0 then states = redis.call('HMGET', KEYS[1], unpack(leads)) end
local n = 0
local queued = {}
local order = {}
for p = 0, pairs_n - 1 do
  local send, due = KEYS[3 + 2 * p], KEYS[4 + 2 * p]
  local lead, acct, member = ARGV[2 + 3 * p], ARGV[3 + 3 * p], ARGV[4 + 3 * p]
  if states[p + 1] == 'ACTIVE' and redis.call('HSETNX', KEYS[2], lead, acct) == 1 then
    -- A queued record is its state alone: no attempts yet, the mailbox is the lead's.
    redis.call('HSETNX', send, 'state', 'QUEUED')
    if not queued[due] then
      queued[due] = {}
      order[#order + 1] = due
    end
    local q = queued[due]
    q[#q + 1] = ARGV[1]
    q[#q + 1] = member
    n = n + 1
  end
end
for _, due in ipairs(order) do
  local q = queued[due]
  -- unpack has a stack limit; the caller sends at most 500 pairs, i.e. 1,000 values.
  redis.call('ZADD', due, 'NX', unpack(q))
end
return n
