-- A process checks the Redis server instance it talks to (worker.epoch):
-- once per process, and again whenever a ledger script refused to run on
-- another instance. The first process to see a new instance does the global
-- part of the recovery, in this one atomic step, before any claim can run on
-- it: the prelude's check makes every ledger script of every other process
-- fail until its own process has been here.
-- ARGV: 3 persistence policy seen now (worker.durability.Policy), 4 replicas
-- connected now, 5 lease (ms), 6 landing window (ms), 7 concurrency to assume
-- per worker whose record does not say, 8 extra invoices to mark per queue,
-- 9 "1" if the caller is a worker (its lease and window become the fleet's),
-- 10 the run id this process was on before ("": none).
-- Returns {"current"|"recovered"|"first", previous run id, invoices marked,
-- "1" if writes may have been lost} ("current": as the process that
-- recovered this instance found them, none marked by this call).
local policy, replicas = ARGV[3], tonumber(ARGV[4])
local lease_ms, window_ms = tonumber(ARGV[5]), tonumber(ARGV[6])
local default_concurrency, extra = tonumber(ARGV[7]), tonumber(ARGV[8])
local is_worker, known_before = ARGV[9] == '1', ARGV[10]

local cur = redis.call('HMGET', E.epoch, 'run_id', 'policy', 'replicas', 'lease_ms', 'window_ms',
  'previous_run_id', 'lossy')
local stored_lease, stored_window = tonumber(cur[4] or '0') or 0, tonumber(cur[5] or '0') or 0
if is_worker then
  -- The fleet's longest lease and window: what a recovery must cover.
  if lease_ms > stored_lease then redis.call('HSET', E.epoch, 'lease_ms', lease_ms) end
  if window_ms > stored_window then redis.call('HSET', E.epoch, 'window_ms', window_ms) end
end

local WEAKER = {always = 1, everysec = 2, no = 3, unknown = 4, off = 5}
if cur[1] == E.run_id then
  -- Still the same instance. Remember the weakest setting seen on it, and any
  -- replica: what the next recovery must assume was lost.
  if (WEAKER[policy] or 4) > (WEAKER[cur[2] or 'always'] or 4) then
    redis.call('HSET', E.epoch, 'policy', policy)
  end
  if replicas > (tonumber(cur[3] or '0') or 0) then
    redis.call('HSET', E.epoch, 'replicas', replicas)
  end
  -- Another process recovered this instance first: what it found.
  return {'current', cur[6] or '', '0', cur[7] or '0'}
end

local previous = cur[1] or ''
-- What the previous instance could have lost: acknowledged writes that were
-- not on disk (any setting but `always`), or not yet on a replica that took
-- over. No epoch at all: a first start, unless this process was on another
-- instance before (then the data is gone, or this is another server).
local lossy
if cur[1] then
  lossy = cur[2] ~= 'always' or (tonumber(cur[3] or '0') or 0) > 0
else
  lossy = known_before ~= ''
end

local marked = 0
if lossy then
  lease_ms = math.max(lease_ms, stored_lease)
  window_ms = math.max(window_ms, stored_window)
  local until_ms = NOW + lease_ms + window_ms

  local detail = 'writes may have been lost: look up before creating'
  local function mark(ik, jid)
    if lookup_first(ik, jid, until_ms, detail) then marked = marked + 1 end
  end

  -- Every record held when the instance went down.
  for _, ik in ipairs(redis.call('ZRANGE', E.leases, 0, -1)) do mark(ik, nil) end

  -- Claims take the lowest-scored due jobs, so what the lost writes claimed
  -- is at the head of each queue (docs/operations.md, "Redis", for the bound):
  -- twice the slots of the workers alive then, plus `extra`.
  local slots, last_beat, beats = {}, 0, {}
  local fleet = redis.call('HGETALL', E.workers)
  for i = 2, #fleet, 2 do
    local ok, w = pcall(cjson.decode, fleet[i])
    if ok and type(w) == 'table' and not w.stopped and tonumber(w.last_beat_ms) then
      beats[#beats + 1] = w
      last_beat = math.max(last_beat, tonumber(w.last_beat_ms))
    end
  end
  for _, w in ipairs(beats) do
    if tonumber(w.last_beat_ms) >= last_beat - 10000 and type(w.queues) == 'table' then
      for _, q in ipairs(w.queues) do
        local c = tonumber(w.concurrency) or default_concurrency
        slots[q] = (slots[q] or 0) + c
      end
    end
  end
  local prefix = E.job_id[1]
  for provider, queue in pairs(E.queue) do
    local n = 2 * (slots[provider] or 0) + extra
    for _, jid in ipairs(redis.call('ZRANGEBYSCORE', queue, '-inf', NOW, 'LIMIT', 0, n)) do
      local hash = string.find(jid, '#[^#]*$')
      if hash and string.sub(jid, 1, #prefix) == prefix then
        mark(string.sub(jid, #prefix + 1, hash - 1), jid)
      end
    end
  end
end

redis.call('HSET', E.epoch, 'run_id', E.run_id, 'policy', policy, 'replicas', replicas,
  'since_ms', NOW, 'previous_run_id', previous, 'lossy', lossy and '1' or '0')
if previous ~= '' or lossy then
  redis.call('LPUSH', E.epochs, cjson.encode({at_ms = NOW, run_id = E.run_id,
    previous_run_id = previous, lossy = lossy, marked = marked}))
  redis.call('LTRIM', E.epochs, 0, 19)
end
return {previous == '' and 'first' or 'recovered', previous, tostring(marked), lossy and '1' or '0'}
