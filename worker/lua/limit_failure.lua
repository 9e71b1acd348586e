-- KEYS: failures, pause. ARGV: limit (0: none), window_ms, member, reason.
-- Counts one failure; when the window holds `limit`, pauses until the oldest
-- failure leaves it. Returns {count, pause_result, pause_ttl_ms}.
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - window)
redis.call('ZADD', KEYS[1], now_ms, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
local count = redis.call('ZCARD', KEYS[1])
local limit = tonumber(ARGV[1])
if limit <= 0 or count < limit then return {count, 0, 0} end
local oldest = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
local ttl = math.max(1, oldest + window - now_ms)
return {count, pause(KEYS[2], ARGV[4], ttl), ttl}
