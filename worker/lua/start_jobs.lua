-- `worker.arq_worker.BatchStartWorker` takes jobs with this.
-- KEYS: none. ARGV: 1 queue, 2 in-progress key prefix, 3 now (ms), 4 in-progress
-- TTL (ms), 5 job key prefix, 6 retry key prefix, 7 largest body (bytes), 8
-- longest id (bytes), 9 arq's try limit, 10.. job ids. arq's own check-and-set
-- per id (`Worker.start_jobs`), atomic here instead of WATCH/MULTI, plus what
-- arq's `run_job` assumes of a job and never checks (`check`): its key holds
-- a string of sane size, its retry counter an integer arq can increment and
-- stay below its try limit with. Returns {job id, score, body, problem} per
-- job taken: an empty body and the problem when the job must be refused.
local function check(id)
  if #id > tonumber(ARGV[8]) then return '', 'its id is ' .. #id .. ' bytes long' end
  local job = ARGV[5] .. id
  local kind = redis.call('TYPE', job)['ok']
  if kind == 'none' then return '', 'its job body is missing' end
  if kind ~= 'string' then return '', 'its job key holds a Redis ' .. kind .. ', not a job' end
  local size = redis.call('STRLEN', job)
  if size > tonumber(ARGV[7]) then
    return '', 'its body is ' .. size .. ' bytes, over the limit of ' .. ARGV[7]
  end
  local retry = ARGV[6] .. id
  local retry_kind = redis.call('TYPE', retry)['ok']
  if retry_kind ~= 'none' then
    local n = retry_kind == 'string' and redis.call('GET', retry) or ''
    if not string.match(n, '^%d+$') or #n > 12 or tonumber(n) >= tonumber(ARGV[9]) then
      return '', 'its retry counter is not a try count below ' .. ARGV[9]
    end
  end
  return redis.call('GET', job), ''
end

local taken = {}
for i = 10, #ARGV do
  local in_progress = ARGV[2] .. ARGV[i]
  if redis.call('EXISTS', in_progress) == 0 then
    local score = redis.call('ZSCORE', ARGV[1], ARGV[i])
    if score and tonumber(score) <= tonumber(ARGV[3]) then
      redis.call('PSETEX', in_progress, ARGV[4], '1')
      local body, problem = check(ARGV[i])
      taken[#taken + 1] = {ARGV[i], score, body, problem}
    end
  end
end
return taken
