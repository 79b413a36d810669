-- members.lua: the live processes of one projection, so that they share its partitions.
--
-- KEYS[1]  {ns:p0}:members:<projection>  sorted set: member token -> expiry (ms, Redis's clock)
-- ARGV[1]  action: join | leave
-- ARGV[2]  the caller's token
-- ARGV[3]  ttl in milliseconds (join)
--
-- join: (re)registers the caller until now + ttl and drops the members whose time ran out,
--       so a SIGKILLed process stops counting once its leases would have expired too.
-- leave: removes the caller (a clean stop: the others take its share at their next round).
-- Returns the number of live members (the caller included after a join).
-- The clock is the server's, so hosts with skewed clocks agree on who is alive.

local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if ARGV[1] == 'join' then
  local ttl = tonumber(ARGV[3])
  redis.call('ZADD', KEYS[1], now_ms + ttl, ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ttl * 2)
else
  redis.call('ZREM', KEYS[1], ARGV[2])
end
return redis.call('ZCARD', KEYS[1])
