-- Park an invoice for a person: state and dead-letter entry in one step.
-- ARGV: 3 invoice key, 4 lease token, 5 error (ErrorInfo JSON), 6 entry
-- fields (JSON object of strings), 7 "1" if the failed request may have
-- landed. Returns {"ok", state} or {"lost"}.
local ik, token, err, fields, maybe_landed = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local rec = ledger_key(ik)
local r = redis.call('HMGET', rec, 'state', 'lease_token', 'batch', 'provider', 'payload',
  'number', 'first_at_ms')
local state, batch, provider = r[1], r[3], r[4]
if not state or r[2] ~= token then return {'lost'} end

-- Only a provable "no" is a rejection: an invoice that may exist stays in
-- doubt, and a created one keeps its receipt (its send failed).
local new = 'rejected'
if state == 'in_doubt' or (state == 'sending' and maybe_landed == '1') then
  new = 'in_doubt'
elseif state == 'created' or state == 'sent' then
  new = state
end

local entry = cjson.decode(fields)
if new == 'in_doubt' then entry.reason = 'in_doubt' end
local dl = key(E.dead_letter, ik)
local first = redis.call('HGET', dl, 'first_at_ms') or r[7]
dlq_unindex(ik)
redis.call('HSET', dl, 'invoice_key', ik, 'payload', r[5], 'batch', batch, 'provider', provider,
  'number', r[6], 'first_at_ms', first, 'last_at_ms', NOW)
for name, value in pairs(entry) do redis.call('HSET', dl, name, value) end
dlq_index(ik, entry.reason or '', batch)
redis.call('HSET', rec, 'dlq', '1', 'error', err)
move(rec, ik, batch, provider, state, new, 'dead-lettered', entry.reason)
metric('rejected', provider, entry.reason)
return {'ok', new}
