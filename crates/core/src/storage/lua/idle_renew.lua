-- Renews a replica's watch leases in one call. A lease that ran out unclaimed is taken
-- back; one another replica holds stays with it.
-- KEYS: 1..n the replica's mailboxes' watch leases
-- ARGV: 1 replica name, 2 lease ms
-- Returns per key 1 (still this replica's) or 0 (lost).
local held = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  local owner = redis.call('GET', key)
  if owner == ARGV[1] or not owner then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    held[i] = 1
  else
    held[i] = 0
  end
end
return held
