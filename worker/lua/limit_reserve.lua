-- KEYS: pause, tat. ARGV: interval_us, max_wait_us.
-- Returns {1, wait_us, slot_us} (reserved), {0, wait_us, slot_us} (too far:
-- nothing reserved) or {-1, pttl, value, now_ms} (paused: nothing reserved).
-- No burst: a slot is never earlier than the previous slot + one interval.
local pttl = redis.call('PTTL', KEYS[1])
if pttl ~= -2 then return {-1, pttl, redis.call('GET', KEYS[1]), now_ms} end
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
local slot = math.max(tat, now_us)
local wait = slot - now_us
if wait > tonumber(ARGV[2]) then return {0, wait, slot} end
local next_tat = slot + interval
redis.call('SET', KEYS[2], string.format('%d', next_tat),
  'PX', math.ceil((next_tat - now_us) / 1000) + 1000)
return {1, wait, slot}
