-- Adds leads; an id already present is a duplicate; a suppressed address (or domain) is
-- added SUPPRESSED.
-- KEYS: 1 leads (id -> JSON), 2 lead-states, 3 suppression
-- ARGV: quadruples (lead id, lead JSON, lower-case address, '@' + lower-case domain)
-- Returns {added, duplicates, suppressed}.
local added, dup, sup = 0, 0, 0
for i = 1, #ARGV, 4 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i+1]) == 1 then
    added = added + 1
    if redis.call('HEXISTS', KEYS[3], ARGV[i+2]) == 1 or redis.call('HEXISTS', KEYS[3], ARGV[i+3]) == 1 then
      redis.call('HSET', KEYS[2], ARGV[i], 'SUPPRESSED'); sup = sup + 1
    else
      redis.call('HSET', KEYS[2], ARGV[i], 'ACTIVE')
    end
  else
    dup = dup + 1
  end
end
return {added, dup, sup}
