-- KEYS: streak, pause. ARGV: failures, span_ms, quiet_ms, reason.
-- Counts one failed connection in the account's streak (a hash: count and
-- first_ms; it lapses after quiet_ms without a failure, and an answer ends
-- it: worker/reachability.py). Once the streak holds `failures` failures
-- spanning at least span_ms, pauses the account with no end (kind
-- "unreachable": the workers' probe ends it), unless it is paused already:
-- any pause already stops every request. Returns {count, paused} (paused 1:
-- this call set the pause).
local count = redis.call('HINCRBY', KEYS[1], 'count', 1)
redis.call('HSETNX', KEYS[1], 'first_ms', now_ms)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
local first = tonumber(redis.call('HGET', KEYS[1], 'first_ms')) or now_ms
if count < tonumber(ARGV[1]) or now_ms - first < tonumber(ARGV[2]) then return {count, 0} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {count, 0} end
redis.call('SET', KEYS[2], '{"reason":' .. cjson.encode(ARGV[4]) .. ',"set_at_ms":'
  .. string.format('%d', now_ms) .. ',"until_ms":null,"kind":"unreachable"}')
redis.call('DEL', KEYS[1])
return {count, 1}
