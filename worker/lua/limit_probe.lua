-- KEYS: pause. Returns {pttl, now_ms, value}; pttl -2 means not paused.
return {redis.call('PTTL', KEYS[1]), now_ms, redis.call('GET', KEYS[1])}
