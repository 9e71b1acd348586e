-- KEYS: pause, streak. The account answered a probe: end its pause if, and
-- only if, it is an "unreachable" one (a pause set meanwhile by an operator
-- or a refused key stays). Returns {ended, set_at_ms, now_ms} (ended 1:
-- this call ended it; when it was set, for the log line).
local value = redis.call('GET', KEYS[1])
if not value then return {0, 0, now_ms} end
local ok, data = pcall(cjson.decode, value)
if not ok or type(data) ~= 'table' or data.kind ~= 'unreachable' then return {0, 0, now_ms} end
redis.call('DEL', KEYS[1], KEYS[2])
return {1, tonumber(data.set_at_ms) or now_ms, now_ms}
