-- append.lua: append a batch of commands to ONE partition; each command is atomic.
-- Runs on Redis 6.2 and 7.x (plain EVAL/EVALSHA, no functions, no 7.x-only commands).
--
-- KEYS[1]    {ns:pN}:stream    the partition's stream: the ledger itself (never trimmed here)
-- KEYS[2]    {ns:pN}:subjects  hash: "<kind>/<org>/<agent>/<subject id>" -> current version,
--                              prefixed with "-" once the subject has ended (forgotten/expired),
--                              "+" while it is an open conversation, "~" once that one is closed
-- KEYS[2+i]  {ns:pN}:idem:<org>/<agent>/<key>  the receipt of command i, or KEYS[2] if it has none
--
-- ARGV[1]    idempotency window in seconds
-- ARGV[2]    n, the number of commands; then, per command, in order:
--              subject field, expected version (-1: any), mode, has idempotency key (0|1),
--              event ids (comma-joined; only stored with an idempotency key, else ""),
--              k (number of events), and k event bodies.
--            mode: create (subject must be absent; bumps the version)
--                  change (must exist and not have ended; bumps)
--                  end    (as change, then marks the subject ended)
--                  touch  (must exist and not have ended; leaves the version as it is)
--                  open   (a conversation's message: absent -> created open; an open
--                          conversation -> bumps; anything else is refused as 'closed')
--                  close  (must be an open conversation; bumps and marks it closed)
--            change, touch and end keep a conversation's mark (until end replaces it).
--
-- Returns one reply per command:
--   {"ok", last stream id, version}              appended (the caller knows its event ids)
--   {"dup", stream id, version, event ids}       idempotent retry: the original receipt
--   {"conflict", current version} | {"exists", current version}
--   {"unknown", "0"} | {"ended", current version}   nothing appended
--   {"closed", current version}                  a message for, or close of, a session that is
--                                                not an open conversation: nothing appended

local ttl = tonumber(ARGV[1])
local n = tonumber(ARGV[2])

local function conversation(raw, version, ended, mark, mode)
  if mode == 'open' and not raw then return nil end
  if not raw then return {'unknown', '0'} end
  if ended then return {'ended', tostring(version)} end
  if mark ~= '+' then return {'closed', tostring(version)} end
  return nil
end

local function rejection(raw, version, ended, mark, expected, mode)
  if expected >= 0 and expected ~= version then return {'conflict', tostring(version)} end
  if mode == 'create' then
    if raw then return {'exists', tostring(version)} end
    return nil
  end
  if mode == 'open' or mode == 'close' then return conversation(raw, version, ended, mark, mode) end
  if not raw then return {'unknown', '0'} end
  if ended then return {'ended', tostring(version)} end
  return nil
end

-- The prefix stored before the new version: end marks '-', open '+', close '~'; any other
-- mode keeps what was there (a summary of a closed conversation leaves it closed).
local function new_mark(mode, mark)
  if mode == 'end' then return '-' end
  if mode == 'open' then return '+' end
  if mode == 'close' then return '~' end
  return mark
end

local out = {}
local a = 3
for i = 1, n do
  local field, expected, mode = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2]
  local has_idem, ids, k = ARGV[a + 3], ARGV[a + 4], tonumber(ARGV[a + 5])
  local first = a + 6
  a = first + k
  local idem = KEYS[2 + i]
  local prior = false
  if has_idem == '1' then prior = redis.call('GET', idem) end
  if prior then
    local sid, ver, pids = string.match(prior, '^([^|]*)|([^|]*)|(.*)$')
    out[i] = {'dup', sid, ver, pids}
  else
    local raw = redis.call('HGET', KEYS[2], field)
    local version, ended, mark = 0, false, ''
    if raw then
      local first = string.sub(raw, 1, 1)
      if first == '-' or first == '+' or first == '~' then mark = first end
      ended = mark == '-'
      version = tonumber(string.sub(raw, #mark + 1))
    end
    local rejected = rejection(raw, version, ended, mark, expected, mode)
    if rejected then
      out[i] = rejected
    else
      local sid
      for j = 0, k - 1 do
        if mode ~= 'touch' then version = version + 1 end
        sid = redis.call('XADD', KEYS[1], '*', 'v', version, 'e', ARGV[first + j])
      end
      if mode ~= 'touch' then
        redis.call('HSET', KEYS[2], field, new_mark(mode, mark) .. version)
      end
      if has_idem == '1' then
        redis.call('SET', idem, sid .. '|' .. version .. '|' .. ids, 'EX', ttl)
      end
      out[i] = {'ok', sid, version}
    end
  end
end
return out
