-- rate_limit.lua: a token bucket per organisation; takes up to `want` tokens at once.
--
-- KEYS[1]  {ns:rate:<org>}  hash: tokens (float), ts (server time, milliseconds: 13 digits, exact in Lua's %.14g)
-- ARGV[1]  rate, tokens added per second
-- ARGV[2]  burst, the bucket's capacity
-- ARGV[3]  want, tokens asked for (the org's commands in this batch)
--
-- Returns {granted, retry_after_ms, left}: granted <= want; retry_after_ms is the wait until
-- the first refused command could pass (0 when all were granted); left is the whole tokens
-- the bucket keeps after this take (so a caller can report it without another round trip).
-- Time comes from the server (TIME) so that clients with skewed clocks share one bucket;
-- effect replication (default since 5.0) makes that safe before a write.

local rate, burst, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
local granted = math.min(want, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
local retry = 0
if granted < want then retry = math.ceil((1 - tokens) * 1000 / rate) end
return {granted, retry, math.floor(tokens)}
