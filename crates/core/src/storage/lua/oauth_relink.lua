-- Gives an existing OAuth2 account a new grant (consent run again) and asks for a new
-- validation: the old access token is dropped, the generation moves on.
-- KEYS: 1 account hash
-- ARGV: 1 record JSON, 2 sealed refresh token, 3 sealed client secret ('' keeps the stored one)
-- Returns the new generation, or -1 if the account does not exist.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[1], 'record', ARGV[1], 'oauth_refresh', ARGV[2], 'status', 'PENDING_VALIDATION')
redis.call('HDEL', KEYS[1], 'oauth_access', 'oauth_expires_ms', 'oauth_lifetime_ms', 'report',
  'smtp_password', 'imap_password')
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'oauth_client_secret', ARGV[3]) end
return redis.call('HINCRBY', KEYS[1], 'generation', 1)
