-- A worker takes an invoice's job. ARGV: 3 invoice key, 4 job id, 5 lease
-- token, 6 lease length (ms), 7 "1" to mark a plain queued record `sending`
-- at once (the runner's fast path: one script instead of two, see
-- worker.ledger.Ledger.claim), 8 the provider's pause key ("": not read),
-- 9 the landing window (ms). Returns {"none"|"busy", reason} or {"held",
-- state, receipt, send_started, lookup, <record fields...>, premarked,
-- pause_pttl, pause_value, now_ms, landing_until_ms, unverified,
-- verify_after_ms, voided_ids, verify_tries}.
local ik, jid, token, lease_ms = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local early_sending, pause_key, window_ms = ARGV[7] == '1', ARGV[8] or '', tonumber(ARGV[9])
local rec = ledger_key(ik)
local r = redis.call('HMGET', rec, 'state', 'job_id', 'dlq', 'lease_token', 'lease_until_ms',
  'send', 'send_started', 'lookup', 'receipt', 'payload', 'provider', 'account', 'batch',
  'failures', 'first_at_ms', 'landing_until_ms', 'unverified', 'verify_after_ms', 'voided_ids',
  'verify_tries')
local state, unverified = r[1], r[17] == '1'
if not state then return {'none', 'no ledger record'} end
if r[2] ~= jid then return {'none', 'superseded by ' .. r[2]} end
if r[3] == '1' then return {'none', 'dead-lettered'} end
if r[4] and r[4] ~= '' and tonumber(r[5]) > NOW then
  -- Another worker holds a live lease: stealing it could send a second
  -- create while the first is still in flight. Its release re-queues if needed.
  return {'busy', 'held by another worker'}
end
if state == 'rejected' or state == 'discarded' then return {'none', state} end
-- A created (or sent) invoice is finished once verified and, if asked, sent.
if not unverified and (state == 'sent' or (state == 'created' and r[6] ~= '1')) then
  return {'none', state}
end
local batch, provider = r[13], r[11]
if state == 'sending' then
  -- The previous holder died (or was cancelled) after a create may have left:
  -- landing_until_ms says until when it may still land.
  move(rec, ik, batch, provider, 'sending', 'in_doubt', 'claimed after interruption', jid)
  state = 'in_doubt'
end
local pause_pttl, pause_value = -2, ''
if pause_key ~= '' then
  pause_pttl = redis.call('PTTL', pause_key)
  if pause_pttl ~= -2 then pause_value = redis.call('GET', pause_key) or '' end
end
-- `sending` before the create is validated and paced is conservative: if
-- the job dies now, the next claim only costs a lookup; a refusal before
-- sending moves it back to queued (`retry`). Never for a paused provider.
-- The landing window is written here, before any request can leave.
local premarked, landing = '0', tonumber(r[16] or '0') or 0
if early_sending and state == 'queued' and r[8] ~= '1' and pause_pttl == -2 then
  move(rec, ik, batch, provider, 'queued', 'sending', 'sending', '')
  landing = extend_landing(rec, r[16], lease_ms, window_ms)
  premarked = '1'
end
redis.call('HSET', rec, 'lease_token', token, 'lease_until_ms', NOW + lease_ms)
redis.call('ZADD', E.leases, NOW + lease_ms, ik)
return {'held', state, r[9] or '', r[7] or '0', r[8] or '0', r[10], provider, r[12], batch,
  r[14] or '0', r[15] or '0', premarked, pause_pttl, pause_value, string.format('%d', NOW),
  string.format('%d', landing), unverified and '1' or '0', r[18] or '0', r[19] or '',
  r[20] or '0'}
