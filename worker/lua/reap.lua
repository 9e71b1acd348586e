-- Hand the jobs of dead lease holders back to the queue, in seconds rather
-- than after arq's in-progress timeout. ARGV: 3 limit. Returns the keys reaped.
local limit = tonumber(ARGV[3])
local expired = redis.call('ZRANGEBYSCORE', E.leases, '-inf', NOW, 'LIMIT', 0, limit)
for _, ik in ipairs(expired) do
  local rec = ledger_key(ik)
  local r = redis.call('HMGET', rec, 'state', 'batch', 'provider', 'job_id', 'dlq', 'send',
    'unverified')
  local state, batch, provider, jid = r[1], r[2], r[3], r[4]
  redis.call('ZREM', E.leases, ik)
  if state then
    redis.call('HDEL', rec, 'lease_token', 'lease_until_ms')
    if state == 'sending' then
      -- landing_until_ms stays: the dead holder's request may land until then.
      move(rec, ik, batch, provider, 'sending', 'in_doubt', 'lease expired', jid)
      state = 'in_doubt'
    else
      event(ik, 'lease expired', state, jid)
    end
    redis.call('DEL', E.arq_in_progress .. jid)
    if needs_job(state, r[5], r[6], r[7]) then ensure_job(provider, ik, jid, true) end
  end
end
return expired
