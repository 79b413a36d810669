-- recent_read.lua: the reader side of the recent-messages read model: the last n messages
-- of one conversation from the live generation, refreshing its TTL. Runs on Redis 6.2 and 7.x.
--
-- KEYS[1]  {ns:pN}:rm:recent_messages:live    the partition's live pointer (a label)
-- KEYS[2]  {ns:pN}:rm:recent_messages:stats   hash: hits, misses (reads answered or not)
--
-- ARGV[1]  {ns:pN}:rm:recent_messages, the model's prefix in the partition (same hash tag)
-- ARGV[2]  the label to read when no pointer is set yet
-- ARGV[3]  the conversation '<org>/<agent>/<session>'
-- ARGV[4]  n, how many of its last messages are asked for
-- ARGV[5]  ttl in milliseconds, set again on a hit
--
-- Reads <prefix>:<label>:m:<conversation> (a list of '<seq>|<json>', oldest first).
-- A hit is a list holding n messages, or holding the conversation from its first message
-- (seq 1) on: it then answers any n. Anything else is a miss (an evicted or never cached
-- conversation, or more asked for than the list keeps): the caller reads PostgreSQL.
--
-- Returns {label, 'hit', entries} or {label, 'miss'}.

local label = redis.call('GET', KEYS[1]) or ARGV[2]
local list = ARGV[1] .. ':' .. label .. ':m:' .. ARGV[3]
local n = tonumber(ARGV[4])
local items = redis.call('LRANGE', list, -n, -1)
if #items > 0 and (#items >= n or string.match(items[1], '^(%d+)|') == '1') then
  redis.call('PEXPIRE', list, tonumber(ARGV[5]))
  redis.call('HINCRBY', KEYS[2], 'hits', 1)
  return {label, 'hit', items}
end
redis.call('HINCRBY', KEYS[2], 'misses', 1)
return {label, 'miss'}
