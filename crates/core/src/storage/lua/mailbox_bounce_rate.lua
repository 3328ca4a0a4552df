-- Records a hard bounce of one of the mailbox's sends and pauses its sending when hard
-- bounces among its last `window` sends exceed the limit (the recent-sends list is kept by
-- send_mark_sent.lua, newest first).
-- KEYS: 1 recent sends (list), 2 bounced sends (set), 3 pause (string)
-- ARGV: 1 send member, 2 window (sends), 3 limit (per mille), 4 fewest sends judged, 5 pause until (ms),
--       6 now (ms), 7 pause JSON
-- Returns {bounced in the window, sends in the window, 1 if this paused the mailbox else 0}.
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], 2592000)
local recent = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
local bounced = 0
for _, member in ipairs(recent) do
  if redis.call('SISMEMBER', KEYS[2], member) == 1 then bounced = bounced + 1 end
end
local n = #recent
if n >= tonumber(ARGV[4]) and bounced * 1000 > tonumber(ARGV[3]) * n and redis.call('EXISTS', KEYS[3]) == 0 then
  local ttl = tonumber(ARGV[5]) - tonumber(ARGV[6])
  if ttl > 0 then
    redis.call('SET', KEYS[3], ARGV[7], 'PX', ttl)
    return {bounced, n, 1}
  end
end
return {bounced, n, 0}
