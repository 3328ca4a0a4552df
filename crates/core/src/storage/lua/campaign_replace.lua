-- Replaces a campaign's record (an edit, or a mailbox taken out) if its state allows, and
-- keeps the mailbox → campaigns index in step with the record's mailboxes.
-- KEYS: 1 campaign hash, 2.. account-campaigns sets: first the ARGV[3] mailboxes added,
--       then the mailboxes removed
-- ARGV: 1 record JSON, 2 campaign id, 3 how many added, 4.. the states that allow it
-- Returns {'ok', ''}, {'conflict', current state} or {'missing', ''}.
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return {'missing', ''} end
local allowed = false
for i = 4, #ARGV do
  if ARGV[i] == cur then allowed = true end
end
if not allowed then return {'conflict', cur} end
redis.call('HSET', KEYS[1], 'record', ARGV[1])
local added = tonumber(ARGV[3])
for i = 2, #KEYS do
  if i - 1 <= added then redis.call('SADD', KEYS[i], ARGV[2]) else redis.call('SREM', KEYS[i], ARGV[2]) end
end
return {'ok', ''}
