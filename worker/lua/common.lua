-- Shared prelude, prepended to every invoicer script (worker/lua/__init__.py).
-- ARGV[1]: the key environment (JSON, built from worker.keys.Keys, so key
-- formats live in Python only); ARGV[2]: "now" in ms, or "" for Redis TIME
-- (one clock for every worker: leases are compared across hosts).
local E = cjson.decode(ARGV[1])

-- The Redis server instance (run id) the caller checked for lost writes
-- (worker.epoch) is added to ARGV[1] as `run_id`. On any other instance (a
-- restart, a failover) the script refuses to run, before it reads or writes
-- anything, until its caller has noticed and recovered: checked here, in the
-- same atomic step as the script's own work, so no claim can slip in between.
do
  local info = redis.call('INFO', 'server')
  if not E.run_id or not string.find(info, 'run_id:' .. E.run_id, 1, true) then
    return redis.error_reply('EPOCH ' .. (string.match(info, 'run_id:(%x+)') or ''))
  end
end
local NOW
if ARGV[2] ~= '' then
  NOW = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function key(tpl, arg) return tpl[1] .. arg .. tpl[2] end
local function ledger_key(ik) return key(E.ledger, ik) end
local function job_id_of(ik, gen) return E.job_id[1] .. ik .. E.job_id[2] .. gen end

-- Counters for /metrics (worker.metrics), moved in the step that changes the
-- state they count: exact across every worker, and no extra round trip.
local function metric(name, provider, reason)
  redis.call('HINCRBY', E.metrics, 'c|' .. name .. '|' .. provider .. '|' .. (reason or ''), 1)
end

local function observe(name, provider, seconds, bounds)
  local b = #bounds
  for i, bound in ipairs(bounds) do
    if seconds <= bound then b = i - 1; break end
  end
  local h = 'h|' .. name .. '|' .. provider .. '|'
  redis.call('HINCRBY', E.metrics, h .. b, 1)
  redis.call('HINCRBY', E.metrics, h .. 'count', 1)
  redis.call('HINCRBYFLOAT', E.metrics, h .. 'sum', seconds)
end

-- Counters per batch, over everything, and per provider account (the
-- invoice key up to its last colon: `maast`, `maast@eu`).
local function count_totals(state, delta, ik)
  redis.call('HINCRBY', E.totals, state, delta)
  redis.call('HINCRBY', key(E.account_totals, string.match(ik, '^(.*):')), state, delta)
end

local function count(batch, state, delta, ik)
  redis.call('HINCRBY', key(E.batch, batch), state, delta)
  count_totals(state, delta, ik)
end

-- A record joins a batch: the member set, its state counter and `total`
-- move together, so sum(states) == total == ZCARD(members) always.
local function join(batch, state, ik)
  count(batch, state, 1, ik)
  count(batch, 'total', 1, ik)
  -- Scored by a per-batch sequence, not the time: many invoices join in the
  -- same millisecond, and the report lists them in the order they came.
  local seq = redis.call('INCR', key(E.batch_seq, batch))
  redis.call('ZADD', key(E.members, batch), seq, ik)
end

-- A record in `state` moves to `to` in `batch`. From another batch (a
-- corrected copy enqueued later, a record parked again), the earlier batch
-- keeps it as history: still a member, counted as `superseded` there, its
-- total unchanged (there, sum(states) + superseded == total == ZCARD(members)).
-- The overall and per-account totals count each invoice once, as it is now.
local function take_over(old_batch, batch, state, to, ik)
  if old_batch == batch then
    count(batch, state, -1, ik)
    count(batch, to, 1, ik)
    return
  end
  local old = key(E.batch, old_batch)
  redis.call('HINCRBY', old, state, -1)
  redis.call('HINCRBY', old, 'superseded', 1)
  count_totals(state, -1, ik)
  count_totals('total', -1, ik) -- join counts it in again
  join(batch, to, ik)
end

local function event(ik, name, state, detail)
  local h = key(E.history, ik)
  redis.call('RPUSH', h, cjson.encode({at_ms = NOW, event = name, state = state, detail = detail or ''}))
  redis.call('LTRIM', h, -50, -1)
end

-- Finished invoices per provider over the last hour (rates, webhooks), and
-- per provider account over the last two minutes: each account's own rate
-- and ETA (worker.account_status), never another account's.
local function finished(provider, ik, state)
  local tp = E.throughput[provider]
  redis.call('ZADD', tp, NOW, ik .. '|' .. state)
  redis.call('ZREMRANGEBYSCORE', tp, '-inf', NOW - 3600000)
  local ta = key(E.account_throughput, string.match(ik, '^(.*):'))
  redis.call('ZADD', ta, NOW, ik .. '|' .. state)
  redis.call('ZREMRANGEBYSCORE', ta, '-inf', NOW - 120000)
end

-- Invoices created and rejected per provider and minute, kept two hours:
-- the dashboard's chart reads 60 small hashes instead of the throughput set.
local function per_minute(provider, field)
  local k = key(E.per_minute[provider], string.format('%d', math.floor(NOW / 60000)))
  redis.call('HINCRBY', k, field, 1)
  redis.call('EXPIRE', k, 7200)
end

-- Move a record to `to`, counters included; `from` is its current state.
local function move(rec, ik, batch, provider, from, to, name, detail)
  if from ~= to then
    count(batch, from, -1, ik)
    count(batch, to, 1, ik)
  end
  redis.call('HSET', rec, 'state', to, 'updated_at_ms', NOW)
  if from ~= to and (to == 'created' or to == 'sent' or to == 'rejected') then
    finished(provider, ik, to)
    if to == 'rejected' then
      per_minute(provider, 'rejected')
    elseif from ~= 'created' then  -- created -> sent created nothing new
      per_minute(provider, 'created')
    end
  end
  event(ik, name, to, detail)
end

-- The dead-letter indexes: every entry is in the main index (newest first),
-- in its reason's, its batch's, its batch-and-reason's, its provider's and
-- its provider-and-reason's, and counted per reason (overall and per
-- batch), so listing, filtering and grouping read indexes, never every
-- entry. Call `dlq_unindex` before an entry's reason or batch changes or it
-- is deleted, `dlq_index` once it is written (its provider is read from it).
local function uncount(hash, field)
  if redis.call('HINCRBY', hash, field, -1) <= 0 then redis.call('HDEL', hash, field) end
end

-- The provider's two indexes (all its entries, those with `reason`), if it is one of ours.
local function dlq_of_provider(provider, reason)
  local all = E.dlq_provider[provider or '']
  if all then return all, key(E.dlq_provider_reason[provider], reason) end
end

local function dlq_unindex(ik)
  local old = redis.call('HMGET', key(E.dead_letter, ik), 'reason', 'batch', 'provider')
  if redis.call('ZREM', E.dead_letters, ik) == 0 then return end
  local reason, batch = old[1] or '', old[2] or ''
  redis.call('ZREM', key(E.dlq_reason, reason), ik)
  redis.call('ZREM', key(E.dlq_batch, batch), ik)
  redis.call('ZREM', E.dlq_batch_reason[1] .. batch .. E.dlq_batch_reason[2] .. reason, ik)
  local of_provider, of_provider_reason = dlq_of_provider(old[3], reason)
  if of_provider then
    redis.call('ZREM', of_provider, ik)
    redis.call('ZREM', of_provider_reason, ik)
  end
  uncount(E.dlq_reasons, reason)
  uncount(key(E.dlq_batch_reasons, batch), reason)
end

local function dlq_index(ik, reason, batch)
  redis.call('ZADD', E.dead_letters, NOW, ik)
  redis.call('ZADD', key(E.dlq_reason, reason), NOW, ik)
  redis.call('ZADD', key(E.dlq_batch, batch), NOW, ik)
  redis.call('ZADD', E.dlq_batch_reason[1] .. batch .. E.dlq_batch_reason[2] .. reason, NOW, ik)
  local provider = redis.call('HGET', key(E.dead_letter, ik), 'provider')
  local of_provider, of_provider_reason = dlq_of_provider(provider, reason)
  if of_provider then
    redis.call('ZADD', of_provider, NOW, ik)
    redis.call('ZADD', of_provider_reason, NOW, ik)
  end
  redis.call('HINCRBY', E.dlq_reasons, reason, 1)
  redis.call('HINCRBY', key(E.dlq_batch_reasons, batch), reason, 1)
end

-- Remove a dead-letter entry and its index entries.
local function dlq_remove(ik)
  dlq_unindex(ik)
  redis.call('DEL', key(E.dead_letter, ik))
end

-- The arq job of one invoice: E.job is its body cut where the arguments and
-- the enqueue time go (worker/arq_job.py owns the format).
local function job_body(ik)
  return E.job[1] .. cjson.encode({ik}) .. E.job[2] .. string.format('%d', NOW) .. E.job[3]
end

-- Write the arq job (no TTL: arq would drop a long-waiting job, issue #320).
local function write_job(provider, ik, jid, score)
  redis.call('SET', E.arq_job .. jid, job_body(ik))
  redis.call('ZADD', E.queue[provider], score, jid)
end

-- Does the record still need a worker to act on it? An unverified invoice
-- does: once its landing window has passed, its copies are looked up again.
local function needs_job(state, dlq, send, unverified)
  if dlq == '1' then return false end
  if unverified == '1' and (state == 'created' or state == 'sent') then return true end
  return state == 'queued' or state == 'sending' or state == 'in_doubt'
    or (state == 'created' and send == '1')
end

-- While a record is `sending`, a create request of ours may leave. A holder
-- starts one only while its lease is valid (worker.held), so every request
-- that left, left before the lease's end: it is processed by lease end +
-- landing window at the latest. `cur` is the stored landing_until_ms (or
-- nil); returns the new one (it never moves back).
local function extend_landing(rec, cur, lease_ms, window_ms)
  local old, new = tonumber(cur or '0') or 0, NOW + lease_ms + window_ms
  if new <= old then return old end
  redis.call('HSET', rec, 'landing_until_ms', new)
  return new
end

-- Make sure a job exists and is queued: never lose an invoice that needs
-- work. `due_now` moves an existing job to run at once (lease reaping).
local function ensure_job(provider, ik, jid, due_now)
  if redis.call('EXISTS', E.arq_job .. jid) == 0 then
    write_job(provider, ik, jid, NOW)
  elseif due_now then
    redis.call('ZADD', E.queue[provider], NOW, jid)
  else
    redis.call('ZADD', E.queue[provider], 'NX', NOW, jid)
  end
end

-- After Redis came back as a new instance that may have lost acknowledged
-- writes (worker.epoch): the record of `ik` (its job `jid`, if given) may
-- have lost a `sending` or `created` mark. It is looked up before anything is
-- created, and nothing is created before `until_ms` (a request that may have
-- left can no longer land); a created one about to be sent looks before
-- sending. Returns whether the record was marked.
local function lookup_first(ik, jid, until_ms, detail)
  local rec = ledger_key(ik)
  local r = redis.call('HMGET', rec, 'state', 'job_id', 'dlq', 'landing_until_ms', 'send',
    'send_started')
  local state = r[1]
  if not state or r[3] == '1' or (jid and r[2] ~= jid) then return false end
  if state == 'queued' or state == 'sending' or state == 'in_doubt' then
    redis.call('HSET', rec, 'lookup', '1')
    if (tonumber(r[4] or '0') or 0) < until_ms then
      redis.call('HSET', rec, 'landing_until_ms', until_ms)
    end
  elseif state == 'created' and r[5] == '1' and r[6] ~= '1' then
    redis.call('HSET', rec, 'send_started', '1')
  else
    return false
  end
  event(ik, 'redis restarted', state, detail)
  return true
end
