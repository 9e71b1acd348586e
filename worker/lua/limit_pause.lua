-- KEYS: pause. ARGV: reason, ttl_ms (-1: until resumed).
return pause(KEYS[1], ARGV[1], tonumber(ARGV[2]))
