-- Enqueue invoices (or requeue a dead letter), each atomically (the whole
-- call is: Redis runs one script at a time). One call takes a slice of a
-- chunk, so the key environment is decoded once per slice, not per invoice.
-- ARGV: 3 provider, 4 account, 5 batch, 6 mode ("enqueue"; "enqueue_all":
-- all or nothing, below; "requeue"; "direct": `invoicer send`, whose new
-- records are looked up before their create, in case an earlier run
-- without a ledger created them), then
-- per invoice 5 values: invoice key, fingerprint, payload, number, send ("1"/"0").
-- Returns {outcome, detail} per invoice, flattened: detail is the state met.
local provider, account, batch, mode = ARGV[3], ARGV[4], ARGV[5], ARGV[6]

local function enqueue_one(ik, fp, payload, number, send)
  local rec = ledger_key(ik)

  local function drop_dead_letter()
    dlq_remove(ik)
    redis.call('HSET', rec, 'dlq', '0')
  end

  -- A fresh job under a new generation: arq refuses an id whose result lives.
  local function new_generation(gen)
    local jid = job_id_of(ik, gen)
    redis.call('HSET', rec, 'generation', gen, 'job_id', jid, 'fp', fp, 'payload', payload,
      'send', send, 'updated_at_ms', NOW)
    redis.call('HDEL', rec, 'lease_token', 'lease_until_ms')
    write_job(provider, ik, jid, NOW)
  end

  local state = redis.call('HGET', rec, 'state')
  if not state then
    redis.call('HSET', rec, 'state', 'queued', 'fp', fp, 'payload', payload, 'provider', provider,
      'account', account, 'number', number, 'batch', batch, 'generation', 1,
      'job_id', job_id_of(ik, 1), 'failures', 0, 'first_at_ms', NOW, 'updated_at_ms', NOW,
      'send', send, 'dlq', '0')
    if mode == 'direct' then redis.call('HSET', rec, 'lookup', '1') end
    join(batch, 'queued', ik)
    write_job(provider, ik, job_id_of(ik, 1), NOW)
    event(ik, 'enqueued', 'queued', batch)
    return {'accepted', ''}
  end

  local cur = redis.call('HMGET', rec, 'fp', 'batch', 'generation', 'dlq', 'unverified')
  local old_fp, old_batch, gen, dlq = cur[1], cur[2], tonumber(cur[3]), cur[4]

  if state == 'rejected' or state == 'discarded' then
    -- Superseded: the record joins this batch as a new generation, fresh
    -- budget; an earlier batch keeps it as history (common.lua, take_over).
    take_over(old_batch, batch, state, 'queued', ik)
    redis.call('HSET', rec, 'batch', batch, 'state', 'queued', 'failures', 0)
    redis.call('HDEL', rec, 'error', 'send_started', 'receipt')
    if old_batch ~= batch then redis.call('HSET', rec, 'supersedes', old_batch) end
    drop_dead_letter()
    new_generation(gen + 1)
    event(ik, mode == 'requeue' and 'requeued' or 'superseded', 'queued', state)
    return {'superseded', state}
  end

  if mode == 'requeue' and dlq == '1' then
    drop_dead_letter()
    if state == 'in_doubt' or (state == 'created' and send == '1') or cur[5] == '1' then
      -- Keep the state: an in-doubt invoice is looked up before any create,
      -- a created one is only verified (if unverified) and sent.
      redis.call('HSET', rec, 'failures', 0)
      new_generation(gen + 1)
      event(ik, 'requeued', state, '')
      return {'superseded', state}
    end
    event(ik, 'dead letter dropped', state, 'nothing left to do')
    if state == 'created' or state == 'sent' then return {'already_created', state} end
    return {'duplicate', state}
  end

  if old_fp ~= fp then return {'conflict', state} end
  if state == 'created' or state == 'sent' then return {'already_created', state} end
  return {'duplicate', state}
end

-- Mode "enqueue_all" (worker.atomic_enqueue): the whole list or nothing.
-- First every invoice is checked, with the rule enqueue_one applies last (a
-- number active with other content is a conflict; earlier copies in the
-- list count as written); if any conflicts, nothing is written (the batch
-- registered for the list in the same transaction goes too) and the reply
-- is {"refused", position, state met, ...} for each conflicting invoice.
if mode == 'enqueue_all' then
  local refused, seen = {'refused'}, {}
  for i = 7, #ARGV, 5 do
    local ik, fp = ARGV[i], ARGV[i + 1]
    local prior = seen[ik]
    if not prior then
      local cur = redis.call('HMGET', ledger_key(ik), 'state', 'fp')
      if cur[1] and cur[1] ~= 'rejected' and cur[1] ~= 'discarded' then
        prior = {cur[2], cur[1]}
      else
        prior = {fp, 'queued'}  -- new or superseded: queued with this content
      end
      seen[ik] = prior
    end
    if prior[1] ~= fp then
      refused[#refused + 1] = (i - 2) / 5
      refused[#refused + 1] = prior[2]
    end
  end
  if #refused > 1 then
    if not redis.call('HGET', key(E.batch, batch), 'total') then  -- no member: ours, new
      redis.call('DEL', key(E.batch, batch))
      redis.call('ZREM', E.batches, batch)
    end
    return refused
  end
end

local replies = {}
for i = 7, #ARGV, 5 do
  local outcome, detail = unpack(enqueue_one(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]))
  replies[#replies + 1] = outcome
  replies[#replies + 1] = detail
end
return replies
