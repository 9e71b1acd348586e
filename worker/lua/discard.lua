-- An operator gives up on a dead-lettered invoice. ARGV: 3 invoice key.
-- Returns 1 if an entry was discarded, 0 if there was none.
local ik = ARGV[3]
local rec = ledger_key(ik)
local r = redis.call('HMGET', rec, 'state', 'batch', 'provider', 'dlq')
local state = r[1]
if not state or r[4] ~= '1' then return 0 end
dlq_remove(ik)
redis.call('HSET', rec, 'dlq', '0')
if state == 'in_doubt' or state == 'sending' then
  -- It may exist at the provider: a later re-enqueue must look it up first.
  redis.call('HSET', rec, 'lookup', '1')
end
if state == 'created' or state == 'sent' then
  event(ik, 'discarded', state, 'dead letter dropped, invoice kept')
else
  move(rec, ik, r[2], r[3], state, 'discarded', 'discarded', '')
end
return 1
