-- trending_top.lua: the ranking of one partition over a window of hourly buckets.
-- Read-only in effect: the scratch key it merges into is deleted before it returns.
--
-- KEYS[1]     {ns:pN}:rm:trending:<label>:tmp   scratch key (same slot as the buckets)
-- KEYS[2..]   the window's buckets of one org, P:t:<hour>:<org> or P:m:<hour>:<org>
--             (missing buckets count as empty)
-- ARGV[1]     limit: 0 returns every member; n returns the n best plus every member tied
--             with the n-th, so that the caller's merge across partitions stays exact
--
-- Returns member, score, member, score, ... (score = the sum over the window)

local n = #KEYS - 1
if n == 0 then return {} end
redis.call('ZUNIONSTORE', KEYS[1], n, unpack(KEYS, 2))
local limit = tonumber(ARGV[1])
local out
if limit > 0 and redis.call('ZCARD', KEYS[1]) > limit then
  local last = redis.call('ZREVRANGE', KEYS[1], limit - 1, limit - 1, 'WITHSCORES')
  out = redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', last[2], 'WITHSCORES')
else
  out = redis.call('ZREVRANGE', KEYS[1], 0, -1, 'WITHSCORES')
end
redis.call('DEL', KEYS[1])
return out
