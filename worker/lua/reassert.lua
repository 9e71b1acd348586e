-- A process re-asserts, on a Redis instance that may have lost acknowledged
-- writes, the invoices it holds and those it sent a request for lately
-- (worker.journal): each is looked up before anything is created again
-- (`lookup_first`), whatever the instance forgot. ARGV: 3 lease (ms), 4
-- landing window (ms), 5.. invoice key, job id pairs. Returns how many
-- records were marked.
local until_ms = NOW + tonumber(ARGV[3]) + tonumber(ARGV[4])
local marked = 0
for i = 5, #ARGV, 2 do
  if lookup_first(ARGV[i], ARGV[i + 1], until_ms, 'in flight here when Redis went away') then
    marked = marked + 1
  end
end
return marked
