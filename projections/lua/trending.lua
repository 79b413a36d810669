-- trending.lua: apply one batch of one partition to the trending read model, with its
-- checkpoint, atomically. Runs on Redis 6.2 and 7.x.
--
-- KEYS[1]  {ns:pN}:rm:trending:<label>:cp   the generation's checkpoint (a stream id)
-- KEYS[2]  {ns:pN}:rm:trending:live         the partition's live pointer (a label)
--
-- ARGV[1]  after: the checkpoint the batch was read from ('0-0' when none is stored)
-- ARGV[2]  to: the stream id of the batch's last event, the new checkpoint
-- ARGV[3]  the caller's label; when not '', the pointer must name it (a live projector
--          whose generation was swapped out stops here); '' for a rebuild
-- ARGV[4]  P, the generation's key prefix {ns:pN}:rm:trending:<label>
-- ARGV[5]  retention: seconds a bucket is kept after its hour ends (0: forever)
-- ARGV[6..] operations, in log order, 5 arguments each: op, memory, org, hour, arg
--            memory = '<org>/<agent>/<memory id>', hour = the event's own hour (Unix s / 3600)
--   S  stored      arg = the memory's tags, comma-joined
--   T  tagged      arg = tags added, comma-joined
--   U  untagged    arg = tags removed, comma-joined
--   R  recalled    arg = '<agent>/<memory id>', the member of the recall buckets
--   F  forgotten or expired: take back everything the memory added, arg as for R
--
-- Keys built from P (the same hash tag, so the same slot as KEYS[1]):
--   P:tags                        hash  memory -> its current tags, comma-joined
--   P:t:<hour>:<org>              zset  tag -> uses in that hour (stored with, tagged with,
--                                       recall of a memory carrying it)
--   P:m:<hour>:<org>              zset  '<agent>/<memory id>' -> recalls in that hour
--   P:c:<org>/<agent>/<memory id> hash  what the memory added, to take it back when it is
--                                       forgotten: '<hour>' -> recalls, '<hour>|<tag>' ->
--                                       tag uses, '_x' -> the hash's own expiry (Unix s)
-- With a retention, buckets expire at the end of their hour plus the retention, and a
-- memory's contributions hash with the latest of its buckets: both derived from event
-- times, never from the clock of the projector.
--
-- Accumulated, written once: the batch's effects gather in Lua tables, and each sorted-set
-- member, hash field and key is written once at the end (a tag used a hundred times in the
-- batch costs one ZINCRBY, not a hundred). The state left is exactly the one the same
-- operations leave applied one per batch, whatever the batching
-- (tests/test_trending_batching.py):
--   * a sorted-set member that only gains keeps a pending delta (one ZINCRBY). A take-back
--     (minus n, removed at <= 0) is not linear: the first one on a member reads its stored
--     score (ZSCORE) and from then on the member's absolute score is tracked (0: absent),
--     written with ZADD or ZREM;
--   * a contributions hash keeps pending increments (one HINCRBY per field); a forget takes
--     back the stored hash plus them, then the hash counts as deleted (DEL at the end) and
--     later credits start from empty;
--   * P:tags is read once for the batch (HMGET) and written once (HSET, HDEL);
--   * expiry, event by event: applied one per batch, an event's EXPIREATs ran at the end of
--     its batch, and one in the past deletes the key. So at the end of each event, a bucket
--     it added to whose expiry is already past counts as deleted, and so does the memory's
--     contributions hash when the event raises its '_x' to a time already past ("past": the
--     script's TIME, one value for the whole script). Scripts before this one applied the
--     expiries at the end of the batch only, so a memory stored in an hour already expired
--     and recalled in a recent one, in the same batch, kept the old hour in its hash.
-- The state still depends on when a batch runs, as any expiry does.
--
-- Returns 'ok', 'fenced' (the checkpoint is not ARGV[1]) or 'moved' (the pointer names
-- another generation); nothing is written unless 'ok'.

if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then return 'moved' end
if (redis.call('GET', KEYS[1]) or '0-0') ~= ARGV[1] then return 'fenced' end
redis.call('SET', KEYS[1], ARGV[2])
if #ARGV < 6 then return 'ok' end  -- no operation (none of the batch's events is one)

local P, retention = ARGV[4], tonumber(ARGV[5])
local TAGS = P .. ':tags'
local now = retention > 0 and tonumber(redis.call('TIME')[1]) or 0

-- The batch's pending state, in tables keyed by Redis key.
-- Sorted sets: pending increments (member -> n); for the members a take-back touched, their
-- absolute score (0: absent) and whether Redis held them before the batch; the sets deleted
-- (as an expiry already past deletes them); the expiry to set.
local zdelta, zscore, zstored, zgone, zat = {}, {}, {}, {}, {}
-- Contributions hashes: pending increments (field -> n); the hashes deleted (by a forget or
-- an expiry already past); '_x' as it now stands (read once); the '_x' and expiry to set.
local hadd, hgone, hx, hat = {}, {}, {}, {}
-- P:tags: memory -> its tags (false: none), read for the whole batch at once; the changed.
local tags, changed = {}, {}

local SLICE = 1000  -- arguments per command built with unpack(), which has a limit; even

-- `command key args...` in slices (the pairs of a flat list stay whole)
local function call_with(command, key, args)
  for i = 1, #args, SLICE do
    redis.call(command, key, unpack(args, i, math.min(i + SLICE - 1, #args)))
  end
end

-- reads the tags of each memory a T, U or R operation needs, as they stand before the batch
local function read_tags()
  local wanted = {}
  for i = 6, #ARGV, 5 do
    local op, memory = ARGV[i], ARGV[i + 1]
    if (op == 'T' or op == 'U' or op == 'R') and tags[memory] == nil then
      tags[memory], wanted[#wanted + 1] = false, memory
    end
  end
  for i = 1, #wanted, SLICE do
    local last = math.min(i + SLICE - 1, #wanted)
    local values = redis.call('HMGET', TAGS, unpack(wanted, i, last))
    for j = 1, #values do tags[wanted[i + j - 1]] = values[j] end
  end
end

local function incr(key, member)
  local scores = zscore[key]
  if scores and scores[member] then
    scores[member] = scores[member] + 1
  else
    local delta = zdelta[key] or {}
    zdelta[key], delta[member] = delta, (delta[member] or 0) + 1
  end
end

-- minus n, the member removed at <= 0: not linear, so the first take-back of a member reads
-- its stored score and from then on the member's absolute score is kept
local function take_back(key, member, n)
  local scores = zscore[key]
  if not scores then
    scores = {}
    zscore[key], zstored[key] = scores, {}
  end
  local score = scores[member]
  if not score then
    local stored = not zgone[key] and redis.call('ZSCORE', key, member)
    local delta = zdelta[key]
    zstored[key][member] = stored and true or nil
    score = (tonumber(stored) or 0) + (delta and delta[member] or 0)
    if delta then delta[member] = nil end
  end
  score = score - n
  scores[member] = score > 0 and score or 0
end

local function delete_hash(c)
  hadd[c], hgone[c], hx[c], hat[c] = nil, true, 0, nil
end

local function credit(c, field)
  local add = hadd[c] or {}
  hadd[c], add[field] = add, (add[field] or 0) + 1
end

-- one use of each tag of `joined` (comma-joined) in `hour`'s bucket `t`, credited to hash
-- `c`; how many
local function use(t, c, hour, joined)
  local n = 0
  for tag in string.gmatch(joined, '[^,]+') do
    incr(t, tag)
    credit(c, hour .. '|' .. tag)
    n = n + 1
  end
  return n
end

local function forget(memory, c, org, member)
  local added = {}
  if not hgone[c] then
    local stored = redis.call('HGETALL', c)
    for i = 1, #stored, 2 do added[stored[i]] = tonumber(stored[i + 1]) end
  end
  for field, n in pairs(hadd[c] or {}) do added[field] = (added[field] or 0) + n end
  for field, n in pairs(added) do
    if field ~= '_x' then
      local hour, tag = string.match(field, '^(%d+)|(.+)$')
      if hour then
        take_back(P .. ':t:' .. hour .. ':' .. org, tag, n)
      else
        take_back(P .. ':m:' .. field .. ':' .. org, member, n)
      end
    end
  end
  delete_hash(c)
  tags[memory], changed[memory] = false, true
end

-- The end of an event that credited hash `c` in bucket `t` and/or `m`, expiring `at`: what
-- the EXPIREATs at the end of a batch of that event alone did (one in the past deletes).
local function expire_zset(key, at)
  if at > now then
    zat[key] = at
  else
    zdelta[key], zscore[key], zstored[key], zgone[key] = nil, nil, nil, true
  end
end

local function expire(c, t, m, at)
  if t then expire_zset(t, at) end
  if m then expire_zset(m, at) end
  local x = hx[c]
  if not x then
    x = tonumber(redis.call('HGET', c, '_x') or '0')
    hx[c] = x
  end
  if at > x then
    if at <= now then
      delete_hash(c)
    else
      hx[c], hat[c] = at, at
    end
  end
end

-- The tags an event adds to the memory's (comma-joined), nil if none.
local function tagged(memory, arg)
  local current, has, added = tags[memory] or '', {}, {}
  for tag in string.gmatch(current, '[^,]+') do has[tag] = true end
  for tag in string.gmatch(arg, '[^,]+') do
    if not has[tag] then has[tag] = true; added[#added + 1] = tag end
  end
  if #added == 0 then return nil end
  local joined = table.concat(added, ',')
  tags[memory], changed[memory] = current == '' and joined or (current .. ',' .. joined), true
  return joined
end

local function untagged(memory, arg)
  local gone, kept = {}, {}
  for tag in string.gmatch(arg, '[^,]+') do gone[tag] = true end
  for tag in string.gmatch(tags[memory] or '', '[^,]+') do
    if not gone[tag] then kept[#kept + 1] = tag end
  end
  tags[memory], changed[memory] = #kept > 0 and table.concat(kept, ',') or false, true
end

read_tags()
for i = 6, #ARGV, 5 do
  local op, memory, org, hour, arg = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local c, used, m = P .. ':c:' .. memory, nil, nil  -- used: the tags the event uses
  if op == 'S' then
    tags[memory], changed[memory], used = arg, true, arg
  elseif op == 'T' then
    used = tagged(memory, arg)
  elseif op == 'U' then
    untagged(memory, arg)
  elseif op == 'R' then
    m = P .. ':m:' .. hour .. ':' .. org
    incr(m, arg)
    credit(c, hour)
    used = tags[memory] or nil
  elseif op == 'F' then
    forget(memory, c, org, arg)
  end
  local t = used and (P .. ':t:' .. hour .. ':' .. org)
  if t and use(t, c, hour, used) == 0 then t = nil end
  if retention > 0 and (t or m) then expire(c, t, m, (hour + 1) * 3600 + retention) end
end

-- The writes, once per key, member and field: deletions first, expiries last.
for key in pairs(zgone) do redis.call('DEL', key) end
for key, delta in pairs(zdelta) do
  for member, n in pairs(delta) do redis.call('ZINCRBY', key, n, member) end
end
for key, scores in pairs(zscore) do
  local add, remove, stored = {}, {}, zstored[key]
  for member, score in pairs(scores) do
    if score > 0 then
      add[#add + 1] = score; add[#add + 1] = member
    elseif stored[member] then
      remove[#remove + 1] = member
    end
  end
  call_with('ZADD', key, add)
  call_with('ZREM', key, remove)
end
for key, at in pairs(zat) do redis.call('EXPIREAT', key, at) end

for c in pairs(hgone) do redis.call('DEL', c) end
for c, add in pairs(hadd) do
  for field, n in pairs(add) do redis.call('HINCRBY', c, field, n) end
end
for c, at in pairs(hat) do
  redis.call('HSET', c, '_x', at)
  redis.call('EXPIREAT', c, at)
end

local set, delete = {}, {}
for memory in pairs(changed) do
  if tags[memory] then
    set[#set + 1] = memory; set[#set + 1] = tags[memory]
  else
    delete[#delete + 1] = memory
  end
end
call_with('HSET', TAGS, set)
call_with('HDEL', TAGS, delete)
return 'ok'
