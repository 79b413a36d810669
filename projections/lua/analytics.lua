-- analytics.lua: apply one batch of one partition to the analytics read model, with its
-- checkpoint, atomically. Runs on Redis 6.2 and 7.x.
--
-- KEYS[1]  {ns:pN}:rm:analytics:<label>:cp  the generation's checkpoint (a stream id)
-- KEYS[2]  {ns:pN}:rm:analytics:live        the partition's live pointer (a label)
--
-- ARGV[1]  after: the checkpoint the batch was read from ('0-0' when none is stored)
-- ARGV[2]  to: the stream id of the batch's last event, the new checkpoint
-- ARGV[3]  the caller's label; when not '', the pointer must name it ('' for a rebuild)
-- ARGV[4]  P, the generation's key prefix {ns:pN}:rm:analytics:<label>
-- ARGV[5..] the batch folded per (day, org), each group:
--            '<day>:<org>' (day = YYYYMMDD of the event's own time, UTC),
--            k, then k pairs (event type, count),
--            a, then a agent ids, u, then u user ids
--
-- Keys built from P (the same hash tag, so the same slot as KEYS[1]):
--   P:n:<day>:<org>   hash         event type -> events that day (exact)
--   P:a:<day>:<org>   HyperLogLog  agents active that day
--   P:u:<day>:<org>   HyperLogLog  users seen that day (MemoryRecalled.user_id,
--                                  SessionIngested.user_id, MemoryStored metadata user_id)
--
-- Returns 'ok', 'fenced' (the checkpoint is not ARGV[1]) or 'moved' (the pointer names
-- another generation); nothing is written unless 'ok'.

if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then return 'moved' end
if (redis.call('GET', KEYS[1]) or '0-0') ~= ARGV[1] then return 'fenced' end
redis.call('SET', KEYS[1], ARGV[2])

local P = ARGV[4]
local CHUNK = 1000  -- elements per PFADD (unpack has a stack limit)

local function pfadd(key, first, count)
  for i = first, first + count - 1, CHUNK do
    redis.call('PFADD', key, unpack(ARGV, i, math.min(i + CHUNK - 1, first + count - 1)))
  end
end

local i = 5
while i <= #ARGV do
  local suffix = ARGV[i]
  local k = tonumber(ARGV[i + 1])
  i = i + 2
  for j = i, i + 2 * k - 1, 2 do
    redis.call('HINCRBY', P .. ':n:' .. suffix, ARGV[j], ARGV[j + 1])
  end
  i = i + 2 * k
  local a = tonumber(ARGV[i])
  if a > 0 then pfadd(P .. ':a:' .. suffix, i + 1, a) end
  i = i + 1 + a
  local u = tonumber(ARGV[i])
  if u > 0 then pfadd(P .. ':u:' .. suffix, i + 1, u) end
  i = i + 1 + u
end
return 'ok'
