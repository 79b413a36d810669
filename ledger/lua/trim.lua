-- trim.lua: trim one partition's stream below a position, and remember what was removed.
-- Runs on Redis 6.2 and 7.x. The ledger is never trimmed by length (MAXLEN), only here,
-- by position (MINID), below what the archive and every projection have checkpointed
-- (the caller decides that: replay/trim.py; this script is `RedisEventLog.trim`).
--
-- KEYS[1]  {ns:pN}:stream   the partition's stream
-- KEYS[2]  {ns:pN}:trimmed  string: the newest stream id ever removed by a trim (readers
--                           of history compare their cursor with it to detect a gap)
-- ARGV[1]  min id: entries with a smaller id are removed; it and newer ones stay
--
-- Returns {number of entries removed, the trimmed-through mark or ""}.
-- Mark and XTRIM change in one script, so a reader (which reads the mark and its XRANGE
-- page in one MULTI) never sees entries gone without the mark saying so. The mark never
-- moves back: a later trim below an earlier one removes nothing and keeps it.

local function key(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

local function newer(a, b)
  local ams, aseq = key(a)
  local bms, bseq = key(b)
  return ams > bms or (ams == bms and aseq > bseq)
end

local mark = redis.call('GET', KEYS[2])
local last = redis.call('XREVRANGE', KEYS[1], '(' .. ARGV[1], '-', 'COUNT', 1)
if #last == 0 then
  return {0, mark or ''}
end
local removed = redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1])
if not mark or newer(last[1][1], mark) then
  mark = last[1][1]
  redis.call('SET', KEYS[2], mark)
end
return {removed, mark}
