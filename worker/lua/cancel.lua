-- Cancel what is still queued of one batch (`worker.cancel`), per invoice
-- atomically, so a worker's claim (worker/lua/claim.lua) runs wholly before
-- or wholly after: a claim after finds `discarded` and does nothing; a
-- claim before holds a live lease, and the invoice is left to finish.
-- ARGV: 3 batch id, 4 the error JSON recorded on cancelled invoices, then
-- the invoice keys. Returns one outcome per key:
--   cancelled       queued, no request ever left: now discarded, job removed
--   send_cancelled  created (a draft), its send not started: stays unsent
--   in_flight       a worker holds it, or a create may be on its way (sending)
--   in_doubt        a create may have landed: its lookup decides, left alone
--   finished        created, sent, rejected, discarded, or dead-lettered
--   moved           a later batch took the invoice number over
--   missing         no ledger record (a ledger bug: reported, never hidden)
local batch, err = ARGV[3], ARGV[4]

local function drop_job(provider, jid)
  redis.call('ZREM', E.queue[provider], jid)
  redis.call('DEL', E.arq_job .. jid)
end

local function cancel_one(ik)
  local rec = ledger_key(ik)
  local r = redis.call('HMGET', rec, 'state', 'batch', 'provider', 'job_id', 'lease_token',
    'lease_until_ms', 'dlq', 'send', 'send_started', 'lookup', 'unverified')
  local state, provider, jid = r[1], r[3], r[4]
  if not state then return 'missing' end
  if r[2] ~= batch then return 'moved' end
  if r[5] and r[5] ~= '' and tonumber(r[6] or '0') > NOW then return 'in_flight' end
  if r[7] == '1' then return 'finished' end
  if state == 'queued' and r[10] ~= '1' then
    drop_job(provider, jid)
    -- A holder whose lease ran out must not act on it any more (`lost`).
    redis.call('HDEL', rec, 'lease_token', 'lease_until_ms')
    redis.call('ZREM', E.leases, ik)
    redis.call('HSET', rec, 'error', err, 'cancelled', '1')
    move(rec, ik, batch, provider, 'queued', 'discarded', 'cancelled', 'batch cancelled')
    return 'cancelled'
  end
  if state == 'created' and r[8] == '1' and r[9] ~= '1' then
    -- An unverified draft keeps its job: its duplicates must still be
    -- looked for and voided; only the send is cancelled.
    if r[11] ~= '1' then drop_job(provider, jid) end
    redis.call('HDEL', rec, 'lease_token', 'lease_until_ms')
    redis.call('ZREM', E.leases, ik)
    redis.call('HSET', rec, 'send', '0', 'cancelled', '1')
    event(ik, 'send cancelled', 'created', 'batch cancelled')
    return 'send_cancelled'
  end
  if state == 'sending' then return 'in_flight' end
  if state == 'queued' or state == 'in_doubt' then return 'in_doubt' end
  return 'finished'
end

local replies, cancelled = {}, 0
for i = 5, #ARGV do
  local outcome = cancel_one(ARGV[i])
  if outcome == 'cancelled' or outcome == 'send_cancelled' then cancelled = cancelled + 1 end
  replies[#replies + 1] = outcome
end
local b = key(E.batch, batch)
redis.call('HSETNX', b, 'cancelled_at_ms', NOW)
if cancelled > 0 then redis.call('HINCRBY', b, 'cancelled', cancelled) end
return replies
