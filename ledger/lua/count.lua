-- count.lua: count one partition's entries in a range without sending them to the client
-- (lag, a worker backlog). Runs on Redis 6.2 and 7.x; reads only.
--
-- KEYS[1]  {ns:pN}:stream  the partition's stream
-- ARGV[1]  start, exclusive: "(<id>"
-- ARGV[2]  end: "+", or "(<id>" (exclusive)
-- ARGV[3]  cap: at most this many entries are looked at
-- ARGV[4..] event types to count; none: count every entry
--
-- Returns the number of matching entries among the first `cap` of the range.
-- An entry's type is the first "type" member of its body `e`: the envelope's, which the
-- codec writes right after `event_id` (a UUID), so no payload field can come before it.

local entries = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[2], 'COUNT', ARGV[3])
if #ARGV < 4 then
  return #entries
end
local wanted = {}
for i = 4, #ARGV do
  wanted[ARGV[i]] = true
end
local found = 0
for _, entry in ipairs(entries) do
  local fields = entry[2]
  for j = 1, #fields, 2 do
    if fields[j] == 'e' then
      local _, stop = string.find(fields[j + 1], '"type":"', 1, true)
      if stop then
        local name = string.match(fields[j + 1], '^([^"]*)"', stop + 1)
        if name and wanted[name] then
          found = found + 1
        end
      end
    end
  end
end
return found
