-- recent_messages.lua: apply one batch of one partition to the recent-messages read model
-- (the last messages of each conversation, a capped list with a TTL) with its checkpoint,
-- atomically. Runs on Redis 6.2 and 7.x.
--
-- KEYS[1]  {ns:pN}:rm:recent_messages:<label>:cp   the generation's checkpoint (a stream id)
-- KEYS[2]  {ns:pN}:rm:recent_messages:live         the partition's live pointer (a label)
--
-- ARGV[1]  after: the checkpoint the batch was read from ('0-0' when none is stored)
-- ARGV[2]  to: the stream id of the batch's last event, the new checkpoint
-- ARGV[3]  the caller's label ('' for a rebuild's shadow: the pointer is not checked)
-- ARGV[4]  P, the generation's key prefix {ns:pN}:rm:recent_messages:<label>
-- ARGV[5]  cap: messages kept per conversation
-- ARGV[6]  ttl in milliseconds of a conversation's list, set on every write (and read)
-- ARGV[7]  k, the number of operations; then k operations: op, conversation, n, n arguments
--   op A  append: ARGV first seq, then n - 1 entries '<seq>|<json>' (oldest first) of the
--         conversation '<org>/<agent>/<session>'
--   op D  drop the conversation's list and head (its transcript was purged; n = 0)
--
-- Keys built from P (the same hash tag, so the same slot as KEYS[1]):
--   P:m:<org>/<agent>/<session>   list   the conversation's last `cap` messages, oldest first
--   P:n                           hash   conversation -> seq of its last message applied
--
-- Why a list is only ever a contiguous suffix of its conversation: a list is created by the
-- conversation's first message only, and appended to only while it exists. Once the TTL
-- evicted it, later messages just move the head in P:n; the reader refills the list from
-- PostgreSQL (recent_refill.lua), and only when PostgreSQL holds exactly that head.
--
-- Returns 'ok', 'fenced' (the checkpoint is not ARGV[1]) or 'moved' (the pointer names
-- another generation); nothing is written unless 'ok'.

if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then return 'moved' end
if (redis.call('GET', KEYS[1]) or '0-0') ~= ARGV[1] then return 'fenced' end
redis.call('SET', KEYS[1], ARGV[2])

local P, cap, ttl = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local heads = P .. ':n'
local i = 8
for _ = 1, tonumber(ARGV[7]) do
  local op, conv, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local list = P .. ':m:' .. conv
  if op == 'A' then
    local first = tonumber(ARGV[i + 3])
    if first == 1 or redis.call('EXISTS', list) == 1 then
      redis.call('RPUSH', list, unpack(ARGV, i + 4, i + 2 + n))
      redis.call('LTRIM', list, -cap, -1)
      redis.call('PEXPIRE', list, ttl)
    end
    redis.call('HSET', heads, conv, first + n - 2)
  else
    redis.call('DEL', list)
    redis.call('HDEL', heads, conv)
  end
  i = i + 3 + n
end
return 'ok'
