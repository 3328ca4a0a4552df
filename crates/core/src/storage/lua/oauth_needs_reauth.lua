-- Marks an OAuth2 account NEEDS_REAUTH after its grant was refused, unless the refresh
-- token that was refused has been replaced meanwhile (a re-consent), and drops the
-- cached access token.
-- KEYS: 1 account hash
-- ARGV: 1 sealed refresh token that was refused, 2 report JSON
-- Returns 'marked' (status changed now), 'already' (was NEEDS_REAUTH), 'superseded' or 'gone'.
if redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
if redis.call('HGET', KEYS[1], 'oauth_refresh') ~= ARGV[1] then return 'superseded' end
if redis.call('HGET', KEYS[1], 'status') == 'NEEDS_REAUTH' then return 'already' end
redis.call('HSET', KEYS[1], 'status', 'NEEDS_REAUTH', 'report', ARGV[2])
redis.call('HDEL', KEYS[1], 'oauth_access', 'oauth_expires_ms', 'oauth_lifetime_ms')
return 'marked'
