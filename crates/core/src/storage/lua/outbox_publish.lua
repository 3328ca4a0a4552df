-- Publishes one event to the webhook outbox, only while a webhook endpoint exists: with
-- none, nobody could ever receive it, and the stream would keep ~100,000 events for no one.
-- (An endpoint receives the events published from its creation on.)
-- KEYS: 1 the webhook endpoints (hash), 2 the outbox stream
-- ARGV: 1 the event (JSON), 2 the outbox's approximate length cap
-- Returns 1 when published, 0 when no endpoint exists.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'event', ARGV[1])
return 1
