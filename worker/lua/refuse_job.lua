-- `worker.refused.Refusals.refuse` moves a job aside with this.
-- KEYS: 1 queue, 2 arq job key, 3 arq retry key, 4 arq in-progress key,
-- 5 refused list. ARGV: 1 job id, 2 entry (JSON), 3 entries kept, 4 "1" when
-- the id is ours (then its arq keys are ours to delete). One step: the job
-- leaves the queue and its entry is written, or neither.
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[4] == '1' then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
else
  redis.call('DEL', KEYS[4])
end
redis.call('LPUSH', KEYS[5], ARGV[2])
redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[3]) - 1)
return 1
