-- Every change a lease holder makes, compare-and-set on its lease token.
-- ARGV: 3 invoice key, 4 token, 5 op, 6 lease length (ms), 7 data (JSON or
-- ""), 8 flag ("1"/"0": count a failure; for `created`: release too when
-- nothing is left to do), 9 landing window (ms), 10 for `created`: "1" if
-- the invoice is unverified (its create outcome was once unknown). Returns
-- {"ok", state[, "released"|"", detail]} or {"lost"} or {"bad", state}.
-- For `verified`, ARGV 10 is the keeper's receipt (JSON, stored as given).
local ik, token, op, lease_ms, data, flag = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6]),
  ARGV[7], ARGV[8]
local window_ms, aux = tonumber(ARGV[9] or '0'), ARGV[10] or ''
local rec = ledger_key(ik)
local r = redis.call('HMGET', rec, 'state', 'lease_token', 'batch', 'provider', 'send',
  'dlq', 'job_id', 'payload', 'number', 'first_at_ms', 'send_started', 'landing_until_ms',
  'unverified')
local state, batch, provider = r[1], r[3], r[4]
if not state or r[2] ~= token then return {'lost'} end

local function is(...)
  for _, s in ipairs({...}) do if state == s then return true end end
  return false
end
local function to(new, name, detail)
  move(rec, ik, batch, provider, state, new, name, detail)
  state = new
end
-- Renewing the lease of a `sending` record moves its landing window too:
-- a request may leave until the new lease ends.
local function renew()
  redis.call('HSET', rec, 'lease_until_ms', NOW + lease_ms)
  redis.call('ZADD', E.leases, NOW + lease_ms, ik)
  if state == 'sending' then extend_landing(rec, r[12], lease_ms, window_ms) end
end
local function unlease()
  redis.call('HDEL', rec, 'lease_token', 'lease_until_ms')
  redis.call('ZREM', E.leases, ik)
end
local function failed()
  if data ~= '' then redis.call('HSET', rec, 'error', data) end
  if flag == '1' then
    redis.call('HINCRBY', rec, 'failures', 1)
    metric('retried', provider, data ~= '' and cjson.decode(data).reason or '')
  end
end

-- The keeper is stored; each voided copy and each copy left open (sent or
-- paid: it cannot be voided) is an event, a batch counter and, for the
-- open ones, an operator-list entry (worker.duplicates).
local function verified(v, receipt)
  local keeper = v.keeper
  local ids = {}
  for _, c in ipairs(v.voided) do
    local what = c.found and 'found voided' or 'voided'
    event(ik, what, state, c.id .. ' (' .. c.status .. '), duplicate of ' .. keeper)
    ids[#ids + 1] = c.id
  end
  local open_ids = {}
  for _, c in ipairs(v.open) do
    event(ik, 'duplicate left open', state, c.id .. ' (' .. c.status .. '): ' .. c.why)
    open_ids[#open_ids + 1] = c.id
  end
  if #open_ids > 0 then redis.call('HSET', rec, 'open_ids', table.concat(open_ids, ',')) end
  if #ids > 0 then
    local old = redis.call('HGET', rec, 'voided_ids')
    local joined = table.concat(ids, ',')
    redis.call('HSET', rec, 'voided_ids', (old and old ~= '') and (old .. ',' .. joined) or joined)
    count(batch, 'voided', #ids, ik)
  end
  if #v.open > 0 or v.why ~= '' then
    local d = key(E.duplicate, ik)
    redis.call('DEL', d)
    redis.call('HSET', d, 'invoice_key', ik, 'number', r[9], 'provider', provider,
      'batch', batch, 'keeper', keeper, 'copies', cjson.encode(v.open), 'why', v.why,
      'at_ms', NOW)
    redis.call('ZADD', E.duplicates, NOW, ik)
    if #v.open > 0 then count(batch, 'duplicates_open', #v.open, ik) end
  end
  redis.call('HSET', rec, 'receipt', receipt)
  redis.call('HDEL', rec, 'unverified', 'verify_after_ms', 'verify_tries')
  count(batch, 'unverified', -1, ik)
  local new = (v.sent or state == 'sent') and 'sent' or 'created'
  to(new, 'verified', keeper)
end

if op == 'heartbeat' then
  renew()
elseif op == 'release' then
  unlease()
  if needs_job(state, r[6], r[5], r[13]) then ensure_job(provider, ik, r[7], false) end
elseif op == 'sending' then
  if not is('queued', 'in_doubt') then return {'bad', state} end
  -- Should this create fail provably unsent (back to queued), the earlier
  -- one that put the record in doubt may still land: look up first then.
  if state == 'in_doubt' then redis.call('HSET', rec, 'lookup', '1') end
  to('sending', 'sending', '')
  renew()
elseif op == 'created' then
  if not is('sending', 'in_doubt', 'queued') then return {'bad', state} end
  local receipt = cjson.decode(data)
  redis.call('HSET', rec, 'receipt', data)
  redis.call('HDEL', rec, 'lookup')
  local new = receipt.sent and 'sent' or 'created'
  local wait_ms = 0
  if aux == '1' then
    -- Created or adopted after an unknown outcome: another copy may still
    -- land until landing_until_ms; it is looked up again from then on.
    local after = tonumber(r[12] or '0') or 0
    redis.call('HSET', rec, 'unverified', '1', 'verify_after_ms', after)
    count(batch, 'unverified', 1, ik)
    wait_ms = math.max(0, after - NOW)
  end
  to(new, 'created', receipt.provider_id .. (aux == '1' and ' (unverified)' or ''))
  metric('created', provider)
  observe('enqueue_to_created', provider, (NOW - tonumber(r[10] or NOW)) / 1000, E.enqueue_buckets)
  if flag == '1' and not needs_job(new, r[6], r[5], aux) then
    -- Nothing follows (flag: the holder will not send): release in the same
    -- step, saving the holder its separate `release` call.
    unlease()
    return {'ok', new, 'released', '0'}
  end
  renew()
  return {'ok', new, '', string.format('%d', wait_ms)}
elseif op == 'verified' then
  if r[13] ~= '1' or not is('created', 'sent') then return {'bad', state} end
  verified(cjson.decode(data), aux)
  renew()
elseif op == 'verify_later' then
  -- The ledger's copy was not among the live copies (a listing that lags):
  -- nothing is voided on such a view; the next verification looks again.
  if r[13] ~= '1' then return {'bad', state} end
  local tries = redis.call('HINCRBY', rec, 'verify_tries', 1)
  event(ik, 'verification postponed', state, data)
  renew()
  return {'ok', state, '', tostring(tries)}
elseif op == 'wait' then
  -- Not a failure (jobs.errors.NotYet): the job runs again later. A
  -- `sending` record whose create never left goes back to queued (with its
  -- lookup kept, see `sending`). Releases in the same step.
  if state == 'sending' then to('queued', 'waiting', data) else event(ik, 'waiting', state, data) end
  unlease()
  if needs_job(state, r[6], r[5], r[13]) then ensure_job(provider, ik, r[7], false) end
  return {'ok', state, 'released'}
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
  if not is('sending', 'in_doubt', 'created', 'sent') then return {'bad', state} end
  failed()
  to(state == 'sending' and 'in_doubt' or state, 'outcome unknown', cjson.decode(data).message)
elseif op == 'retry' then
  if not is('sending', 'in_doubt', 'queued', 'created', 'sent') then return {'bad', state} end
  failed()
  local detail = ''
  if data ~= '' then detail = cjson.decode(data).message end
  to(state == 'sending' and 'queued' or state, 'retry later', detail)
else
  return redis.error_reply('unknown op ' .. op)
end
return {'ok', state}
