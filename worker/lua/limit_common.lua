-- Shared by the limiter's scripts (worker/limits.py): Redis's clock, and a
-- pause that never shortens. `ttl_ms < 0` pauses until resumed by hand.
-- pause() returns 0 (unchanged: an equal or longer pause holds), 1 (newly
-- paused) or 2 (an existing pause lengthened).
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)
local function pause(key, reason, ttl_ms)
  local pttl = redis.call('PTTL', key)
  if pttl == -1 then return 0 end
  if ttl_ms >= 0 and pttl >= ttl_ms then return 0 end
  local until_ms = 'null'
  if ttl_ms >= 0 then until_ms = string.format('%d', now_ms + ttl_ms) end
  local value = '{"reason":' .. cjson.encode(reason) .. ',"set_at_ms":'
    .. string.format('%d', now_ms) .. ',"until_ms":' .. until_ms .. '}'
  if ttl_ms >= 0 then
    redis.call('SET', key, value, 'PX', ttl_ms)
  else
    redis.call('SET', key, value)
  end
  if pttl == -2 then return 1 end
  return 2
end
