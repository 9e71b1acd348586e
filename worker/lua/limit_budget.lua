-- KEYS: failures, tat, pause. ARGV: window_ms.
-- Returns {now_us, failures_in_window, tat_us, pause_pttl}.
local failures = redis.call('ZCOUNT', KEYS[1], now_ms - tonumber(ARGV[1]) + 1, '+inf')
local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
return {string.format('%d', now_us), failures, string.format('%d', tat),
  redis.call('PTTL', KEYS[3])}
