-- activity.lua: apply one batch of one partition to the activity read model (capped feed
-- per agent) with its checkpoint, atomically, and publish each event to its org's channel.
-- Runs on Redis 6.2 and 7.x.
--
-- KEYS[1]  {ns:pN}:rm:activity:<label>:cp   the generation's checkpoint (a stream id)
-- KEYS[2]  {ns:pN}:rm:activity:live         the partition's live pointer (a label)
--
-- ARGV[1]  after: the checkpoint the batch was read from ('0-0' when none is stored)
-- ARGV[2]  to: the stream id of the batch's last event, the new checkpoint
-- ARGV[3]  the caller's label; when not '', the pointer must name it and the events are
--          published; '' for a rebuild, which publishes nothing
-- ARGV[4]  P, the generation's key prefix {ns:pN}:rm:activity:<label>
-- ARGV[5]  the feed length: entries kept per agent
-- ARGV[6]  k, the number of feed operations; then k operations: op, feed, n, n arguments
--   op P  push n entries ('<m|s>:<subject>|<json>', oldest first) onto feed '<org>/<agent>'
--   op F  drop every entry of the subject named by the one argument ('m:<memory id>', n = 1):
--         the memory was forgotten or expired
--   Operations on one feed are in log order; different feeds are independent.
-- then pairs (channel, message): one notification per event, in log order (sent only
--   when ARGV[3] is not '': a rebuild publishes nothing)
--
-- Keys built from P (the same hash tag, so the same slot as KEYS[1]):
--   P:f:<org>/<agent>   list   the agent's feed entries, newest first, at most ARGV[5]
--
-- Returns 'ok', 'fenced' (the checkpoint is not ARGV[1]) or 'moved' (the pointer names
-- another generation); nothing is written or published unless 'ok'.

if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then return 'moved' end
if (redis.call('GET', KEYS[1]) or '0-0') ~= ARGV[1] then return 'fenced' end
redis.call('SET', KEYS[1], ARGV[2])

local P, cap = ARGV[4], tonumber(ARGV[5])
local i = 7
for _ = 1, tonumber(ARGV[6]) do
  local op, feed, n = ARGV[i], P .. ':f:' .. ARGV[i + 1], tonumber(ARGV[i + 2])
  if op == 'P' then
    -- Trimming once after n pushes leaves what trimming after each push would.
    redis.call('LPUSH', feed, unpack(ARGV, i + 3, i + 2 + n))
    redis.call('LTRIM', feed, 0, cap - 1)
  else
    local mark = ARGV[i + 3] .. '|'
    for _, entry in ipairs(redis.call('LRANGE', feed, 0, -1)) do
      if string.sub(entry, 1, #mark) == mark then redis.call('LREM', feed, 0, entry) end
    end
  end
  i = i + 3 + n
end
if ARGV[3] ~= '' then
  for j = i, #ARGV, 2 do redis.call('PUBLISH', ARGV[j], ARGV[j + 1]) end
end
return 'ok'
