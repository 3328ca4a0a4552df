-- Counts a sender-side refusal of a mailbox and pauses its sending once there were enough
-- within the window (or at once, for a quota answer).
-- KEYS: 1 refusals (zset, the mailbox's), 2 pause (string, the mailbox's)
-- ARGV: 1 now (ms), 2 window (ms), 3 limit, 4 pause until (ms), 5 pause reason JSON, 6 '1' = pause now,
--       7 a unique id for this refusal
-- Returns {refusals in the window, paused until (ms) or 0}.
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[7])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local n = redis.call('ZCARD', KEYS[1])
if ARGV[6] == '1' or n >= tonumber(ARGV[3]) then
  local ttl = tonumber(ARGV[4]) - tonumber(ARGV[1])
  if ttl > 0 then
    redis.call('SET', KEYS[2], ARGV[5], 'PX', ttl)
    return {n, tonumber(ARGV[4])}
  end
end
return {n, 0}
