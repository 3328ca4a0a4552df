-- Deletes a campaign that is not RUNNING: its record leaves the listing and every
-- mailbox's index in the same step, so no send loop can reserve for it afterwards (the
-- reserve script reads the record's state). Its leads and send records are removed next
-- by the caller; any left over by a crash are unreachable and harmless.
-- KEYS: 1 campaign hash, 2 campaigns (zset), 3.. account-campaigns sets of its mailboxes
-- ARGV: 1 campaign id
-- Returns {'deleted'}, {'running'} or {'missing'}.
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return {'missing'} end
if cur == 'RUNNING' then return {'running'} end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
for i = 3, #KEYS do redis.call('SREM', KEYS[i], ARGV[1]) end
return {'deleted'}
