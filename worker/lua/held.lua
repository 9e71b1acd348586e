-- Every change a lease holder makes, compare-and-set on its lease token.
-- ARGV: 3 invoice key, 4 token, 5 op, 6 lease length (ms), 7 data (JSON or
-- ""), 8 flag ("1"/"0": count a failure; for `created`: release too when
-- nothing is left to do). Returns {"ok", state[, "released"]} or {"lost"} or
-- {"bad", state}.
local ik, token, op, lease_ms, data, flag = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6]),
  ARGV[7], ARGV[8]
local rec = ledger_key(ik)
local r = redis.call('HMGET', rec, 'state', 'lease_token', 'batch', 'provider', 'send',
  'dlq', 'job_id', 'payload', 'number', 'first_at_ms', 'send_started')
local state, batch, provider = r[1], r[3], r[4]
if not state or r[2] ~= token then return {'lost'} end

local function is(...)
  for _, s in ipairs({...}) do if state == s then return true end end
  return false
end
local function to(new, name, detail) move(rec, ik, batch, provider, state, new, name, detail) end
local function renew()
  redis.call('HSET', rec, 'lease_until_ms', NOW + lease_ms)
  redis.call('ZADD', E.leases, NOW + lease_ms, ik)
end
local function failed()
  if data ~= '' then redis.call('HSET', rec, 'error', data) end
  if flag == '1' then
    redis.call('HINCRBY', rec, 'failures', 1)
    metric('retried', provider, data ~= '' and cjson.decode(data).reason or '')
  end
end

if op == 'heartbeat' then
  renew()
elseif op == 'release' then
  redis.call('HDEL', rec, 'lease_token', 'lease_until_ms')
  redis.call('ZREM', E.leases, ik)
  if needs_job(state, r[6], r[5]) then ensure_job(provider, ik, r[7], false) end
  -- data: ms the job must wait when a request may still be in flight (the
  -- holder was interrupted), so the next claim's lookup cannot miss it.
  if data ~= '' and r[6] ~= '1' and (state == 'sending' or (state == 'created' and r[11] == '1')) then
    redis.call('ZADD', E.queue[provider], 'XX', NOW + tonumber(data), r[7])
  end
elseif op == 'sending' then
  if not is('queued', 'in_doubt') then return {'bad', state} end
  to('sending', 'sending', '')
  renew()
elseif op == 'created' then
  if not is('sending', 'in_doubt', 'queued') then return {'bad', state} end
  local receipt = cjson.decode(data)
  redis.call('HSET', rec, 'receipt', data)
  redis.call('HDEL', rec, 'lookup')
  local new = receipt.sent and 'sent' or 'created'
  to(new, 'created', receipt.provider_id)
  metric('created', provider)
  observe('enqueue_to_created', provider, (NOW - tonumber(r[10] or NOW)) / 1000, E.enqueue_buckets)
  if flag == '1' and not needs_job(new, r[6], r[5]) then
    -- Nothing follows (flag: the holder will not send): release in the same
    -- step, saving the holder its separate `release` call.
    redis.call('HDEL', rec, 'lease_token', 'lease_until_ms')
    redis.call('ZREM', E.leases, ik)
    return {'ok', new, 'released'}
  end
  renew()
elseif op == 'send_started' then
  if not is('created') then return {'bad', state} end
  redis.call('HSET', rec, 'send_started', '1')
  event(ik, 'sending', state, '')
  renew()
elseif op == 'sent' then
  if not is('created', 'sent') then return {'bad', state} end
  redis.call('HSET', rec, 'receipt', data)
  to('sent', 'sent', cjson.decode(data).provider_id)
elseif op == 'in_doubt' then
  -- A created record whose send may have landed stays created: the next
  -- claim sees send_started and looks the invoice up before sending again.
  if not is('sending', 'in_doubt', 'created') then return {'bad', state} end
  failed()
  to(state == 'created' and 'created' or 'in_doubt', 'outcome unknown',
    cjson.decode(data).message)
elseif op == 'retry' then
  if not is('sending', 'in_doubt', 'queued', 'created') then return {'bad', state} end
  failed()
  local detail = ''
  if data ~= '' then detail = cjson.decode(data).message end
  to(state == 'sending' and 'queued' or state, 'retry later', detail)
else
  return redis.error_reply('unknown op ' .. op)
end
return {'ok', redis.call('HGET', rec, 'state')}
