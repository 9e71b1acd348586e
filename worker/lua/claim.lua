-- A worker takes an invoice's job. ARGV: 3 invoice key, 4 job id, 5 lease
-- token, 6 lease length (ms). Returns {"none"|"busy", reason} or
-- {"held", state, receipt, send_started, lookup, <record fields...>}.
local ik, jid, token, lease_ms = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local rec = ledger_key(ik)
local r = redis.call('HMGET', rec, 'state', 'job_id', 'dlq', 'lease_token', 'lease_until_ms',
  'send', 'send_started', 'lookup', 'receipt', 'payload', 'provider', 'account', 'batch',
  'failures', 'first_at_ms')
local state = r[1]
if not state then return {'none', 'no ledger record'} end
if r[2] ~= jid then return {'none', 'superseded by ' .. r[2]} end
if r[3] == '1' then return {'none', 'dead-lettered'} end
if r[4] and r[4] ~= '' and tonumber(r[5]) > NOW then
  -- Another worker holds a live lease: stealing it could send a second
  -- create while the first is still in flight. Its release re-queues if needed.
  return {'busy', 'held by another worker'}
end
if state == 'sent' or state == 'rejected' or state == 'discarded'
  or (state == 'created' and r[6] ~= '1') then
  return {'none', state}
end
local batch, provider = r[13], r[11]
if state == 'sending' then
  -- The previous holder died (or was cancelled) after a create may have left.
  move(rec, ik, batch, provider, 'sending', 'in_doubt', 'claimed after interruption', jid)
  state = 'in_doubt'
end
redis.call('HSET', rec, 'lease_token', token, 'lease_until_ms', NOW + lease_ms)
redis.call('ZADD', E.leases, NOW + lease_ms, ik)
return {'held', state, r[9] or '', r[7] or '0', r[8] or '0', r[10], provider, r[12], batch,
  r[14] or '0', r[15] or '0'}
