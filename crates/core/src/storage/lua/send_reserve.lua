-- Claims one due send: chain, campaign, lead, suppression, at-most-once, cap, campaign cap
-- and gap are checked and taken in one atomic step.
-- KEYS: 1 chain, 2 campaign, 3 lead-states, 4 suppression, 5 send, 6 cap (mailbox, local day),
--       7 campaign-day (a placeholder when the campaign has no daily limit), 8 next-send, 9 inflight
-- ARGV: 1 chain token, 2 now (ms), 3 cap, 4 campaign cap (0 = none), 5 gap (ms), 6 lead id,
--       7 address (lower-case), 8 attempt id, 9 send member, 10 account id, 11 counter TTL (s),
--       12 the address's domain entry ('@' + lower-case domain), 13 spread until (ms; 0 = pace by the
--       gap only), 14 spread jitter (per mille, e.g. 800-1200), 15 the claim's phase: 'pre', or 'data'
--       where the mailbox's Sent folder settles a crash's outcome (the body may follow without a mark)
-- Returns {outcome, detail}: {'ok', used} | {'stale_chain'} | {'campaign_not_running'} |
--   {'lead_inactive', state} | {'suppressed'} | {'not_queued', state} | {'cap', used} |
--   {'campaign_cap'} | {'gap', next allowed (ms)}
-- One read for the chain, the cap counter and the gap marker.
local chain_used_next = redis.call('MGET', KEYS[1], KEYS[6], KEYS[8])
if chain_used_next[1] ~= ARGV[1] then return {'stale_chain', ''} end
if redis.call('HGET', KEYS[2], 'state') ~= 'RUNNING' then return {'campaign_not_running', ''} end
local ls = redis.call('HGET', KEYS[3], ARGV[6])
if ls ~= 'ACTIVE' then return {'lead_inactive', ls or ''} end
local suppressed = redis.call('HMGET', KEYS[4], ARGV[7], ARGV[12])
if suppressed[1] or suppressed[2] then
  redis.call('HSET', KEYS[3], ARGV[6], 'SUPPRESSED')
  return {'suppressed', ''}
end
local st = redis.call('HGET', KEYS[5], 'state')
if st ~= 'QUEUED' then return {'not_queued', st or ''} end
local used = tonumber(chain_used_next[2] or '0')
if used >= tonumber(ARGV[3]) then return {'cap', tostring(used)} end
local ccap = tonumber(ARGV[4])
if ccap > 0 and tonumber(redis.call('GET', KEYS[7]) or '0') >= ccap then return {'campaign_cap', ''} end
local now = tonumber(ARGV[2])
local nxt = tonumber(chain_used_next[3] or '0')
if now < nxt then return {'gap', tostring(nxt)} end
if redis.call('INCR', KEYS[6]) == 1 then redis.call('EXPIRE', KEYS[6], ARGV[11]) end
local camp_key = ''
if ccap > 0 then
  if redis.call('INCR', KEYS[7]) == 1 then redis.call('EXPIRE', KEYS[7], ARGV[11]) end
  camp_key = KEYS[7]
end
-- Spread pacing: the rest of the window shared among the sends the cap still allows today.
local gap = tonumber(ARGV[5])
local spread_until = tonumber(ARGV[13])
if spread_until > now then
  local left = tonumber(ARGV[3]) - (used + 1)
  local spread = math.floor((spread_until - now) / (left + 1) * tonumber(ARGV[14]) / 1000)
  if spread > gap then gap = spread end
end
-- Without a gap the marker (at most now, checked above) already allows the next send.
if gap > 0 then redis.call('SET', KEYS[8], string.format('%d', now + gap), 'PX', 172800000) end
redis.call('HSET', KEYS[5], 'state', 'SENDING', 'phase', ARGV[15], 'attempt', ARGV[8], 'account', ARGV[10],
  'at', ARGV[2], 'cap_key', KEYS[6], 'campaign_day_key', camp_key)
redis.call('ZADD', KEYS[9], now, ARGV[9])
return {'ok', tostring(used + 1)}
