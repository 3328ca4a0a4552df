-- Records one accepted send and claims the mailbox's next one in a single call, for a chain
-- that sends back to back (one round trip per email fewer). The two halves are exactly
-- send_mark_sent.lua and send_reserve.lua, prepended by `lua_script!` as local functions of
-- their own KEYS and ARGV (`mark_sent`, `reserve`), so every branch of either is the one its
-- own tests cover, and the outcome of one never changes what the other checks.
-- KEYS: send_mark_sent's (the next-to-last ARGV says how many), then send_reserve's
-- ARGV: send_mark_sent's (the last ARGV says how many), then send_reserve's, then how many
--       KEYS are send_mark_sent's, then how many ARGV are
-- Returns reserve's {outcome, detail} followed by mark_sent's reply.
local nk, na = tonumber(ARGV[#ARGV - 1]), tonumber(ARGV[#ARGV])
-- Split by unpack (in C), not element by element.
local sent_keys, sent_argv = {unpack(KEYS, 1, nk)}, {unpack(ARGV, 1, na)}
local reserve_keys, reserve_argv = {unpack(KEYS, nk + 1, #KEYS)}, {unpack(ARGV, na + 1, #ARGV - 2)}
-- The record first: it is the older fact, and a refused claim must not hold it back.
local recorded = mark_sent(sent_keys, sent_argv)
local reserved = reserve(reserve_keys, reserve_argv)
local out = {reserved[1], reserved[2]}
for _, v in ipairs(recorded) do out[#out + 1] = v end
return out
