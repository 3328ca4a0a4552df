-- Stores a refreshed access token together with the refresh token it came with, in one
-- write: a rotated refresh token (the old one is now dead) can never be lost to a crash
-- between two writes. Only if the refresh token used is still the stored one: a
-- re-consent meanwhile replaced the grant, and its tokens win.
-- KEYS: 1 account hash
-- ARGV: 1 sealed refresh token used, 2 sealed refresh token to keep (the new one, or ARGV 1),
--       3 sealed access token, 4 expires at (ms), 5 lifetime (ms)
-- Returns 'stored', 'superseded' or 'gone'.
if redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
if redis.call('HGET', KEYS[1], 'oauth_refresh') ~= ARGV[1] then return 'superseded' end
redis.call('HSET', KEYS[1], 'oauth_refresh', ARGV[2], 'oauth_access', ARGV[3], 'oauth_expires_ms', ARGV[4],
  'oauth_lifetime_ms', ARGV[5])
return 'stored'
