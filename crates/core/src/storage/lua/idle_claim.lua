-- Claims up to ARGV[3] mailboxes nobody watches for one replica.
-- KEYS: 1..n candidate mailboxes' watch leases
-- ARGV: 1 replica name, 2 lease ms, 3 most to claim
-- Returns the 1-based indexes of the KEYS claimed.
local claimed = {}
local most = tonumber(ARGV[3])
for i = 1, #KEYS do
  if #claimed >= most then break end
  local key = KEYS[i]
  if redis.call('SET', key, ARGV[1], 'NX', 'PX', ARGV[2]) then
    claimed[#claimed + 1] = i
  end
end
return claimed
