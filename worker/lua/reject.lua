-- Park records that failed validation at enqueue, so every record of a file
-- ends created, dead-lettered with its reason, or visibly waiting. A record
-- whose number is already active (queued, in flight, created) is left alone:
-- the bad copy is only reported. ARGV: 3 provider, 4 account, 5 batch, then
-- per record 5 values: invoice key, number, payload ("" if it never parsed),
-- entry fields (JSON object of strings, `source` included), the ledger's
-- error (JSON, for reports). Returns one outcome per record:
-- "dead_lettered" or "kept".
local provider, account, batch = ARGV[3], ARGV[4], ARGV[5]

-- A second refused record with this number in the same batch (a repeat in
-- one file): one entry, and one ledger error, list the problems and rows of both.
local function merge(rec, dl, fields)
  local old = redis.call('HMGET', dl, 'field_errors', 'source', 'message')
  local errors = cjson.decode(old[1] or '[]')
  for _, e in ipairs(cjson.decode(fields.field_errors)) do errors[#errors + 1] = e end
  fields.field_errors = cjson.encode(errors)
  if old[2] and fields.source then
    local were, now = cjson.decode(old[2]), cjson.decode(fields.source)
    for _, row in ipairs(now.rows) do were.rows[#were.rows + 1] = row end
    fields.source = cjson.encode(were)
  end
  fields.message = (old[3] or '') .. ' | ' .. fields.message
  fields.reason, fields.payload = nil, nil
  for name, value in pairs(fields) do redis.call('HSET', dl, name, value) end
  local err = cjson.decode(redis.call('HGET', rec, 'error') or '{}')
  err.message, err.field_errors = fields.message, errors
  redis.call('HSET', rec, 'error', cjson.encode(err), 'updated_at_ms', NOW)
end

local function reject_one(ik, number, payload, fields, error)
  local rec = ledger_key(ik)
  local dl = key(E.dead_letter, ik)
  local state = redis.call('HGET', rec, 'state')
  local gen = 1
  if state then
    if state ~= 'rejected' and state ~= 'discarded' then return 'kept' end
    local cur = redis.call('HMGET', rec, 'batch', 'generation', 'dlq')
    if cur[1] == batch and cur[3] == '1' and redis.call('EXISTS', dl) == 1 then
      merge(rec, dl, cjson.decode(fields))
      event(ik, 'invalid at enqueue', 'rejected', batch)
      return 'dead_lettered'
    end
    take_over(cur[1], batch, state, 'rejected', ik)
    gen = tonumber(cur[2]) + 1
    redis.call('HDEL', rec, 'send_started', 'receipt', 'lease_token', 'lease_until_ms')
    if cur[1] ~= batch then redis.call('HSET', rec, 'supersedes', cur[1]) end
  else
    join(batch, 'rejected', ik)
  end
  redis.call('HSET', rec, 'state', 'rejected', 'fp', '', 'payload', payload, 'provider', provider,
    'account', account, 'number', number, 'batch', batch, 'generation', gen,
    'job_id', job_id_of(ik, gen), 'failures', 0, 'first_at_ms', NOW, 'updated_at_ms', NOW,
    'send', '0', 'dlq', '1', 'error', error)
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
for i = 6, #ARGV, 5 do
  replies[#replies + 1] = reject_one(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])
end
return replies
