-- Gives up a replica's watch leases (those another replica holds are left alone).
-- KEYS: 1..n mailboxes' watch leases
-- ARGV: 1 replica name
-- Returns how many were released.
local released = 0
for i = 1, #KEYS do
  local key = KEYS[i]
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    released = released + 1
  end
end
return released
