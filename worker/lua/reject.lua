-- Park records that failed validation at enqueue, so every record of a file
-- ends created, dead-lettered with its reason, or visibly waiting. A record
-- whose number is already active (queued, in flight, created) is left alone:
-- the bad copy is only reported. ARGV: 3 provider, 4 account, 5 batch, then
-- per record 4 values: invoice key, number, payload ("" if it never parsed),
-- entry fields (JSON object of strings). Returns one outcome per record:
-- "dead_lettered" or "kept".
local provider, account, batch = ARGV[3], ARGV[4], ARGV[5]

local function reject_one(ik, number, payload, fields)
  local rec = ledger_key(ik)
  local state = redis.call('HGET', rec, 'state')
  local gen = 1
  if state then
    if state ~= 'rejected' and state ~= 'discarded' then return 'kept' end
    local cur = redis.call('HMGET', rec, 'batch', 'generation')
    leave(cur[1], state, ik)
    gen = tonumber(cur[2]) + 1
    redis.call('HDEL', rec, 'error', 'send_started', 'receipt', 'lease_token', 'lease_until_ms')
  end
  redis.call('HSET', rec, 'state', 'rejected', 'fp', '', 'payload', payload, 'provider', provider,
    'account', account, 'number', number, 'batch', batch, 'generation', gen,
    'job_id', job_id_of(ik, gen), 'failures', 0, 'first_at_ms', NOW, 'updated_at_ms', NOW,
    'send', '0', 'dlq', '1')
  join(batch, 'rejected', ik)
  local dl = key(E.dead_letter, ik)
  dlq_remove(ik)
  redis.call('HSET', dl, 'invoice_key', ik, 'payload', payload, 'batch', batch,
    'provider', provider, 'number', number, 'first_at_ms', NOW, 'last_at_ms', NOW)
  local entry = cjson.decode(fields)
  for name, value in pairs(entry) do redis.call('HSET', dl, name, value) end
  dlq_index(ik, entry.reason or '', batch)
  event(ik, 'invalid at enqueue', 'rejected', batch)
  return 'dead_lettered'
end

local replies = {}
for i = 6, #ARGV, 4 do
  replies[#replies + 1] = reject_one(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3])
end
return replies
