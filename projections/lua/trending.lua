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
-- Returns 'ok', 'fenced' (the checkpoint is not ARGV[1]) or 'moved' (the pointer names
-- another generation); nothing is written unless 'ok'.

if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then return 'moved' end
if (redis.call('GET', KEYS[1]) or '0-0') ~= ARGV[1] then return 'fenced' end
redis.call('SET', KEYS[1], ARGV[2])

local P, retention = ARGV[4], tonumber(ARGV[5])
local TAGS = P .. ':tags'
local buckets, contributions = {}, {}  -- key -> expiry, applied once at the end

local function split(s)
  local out = {}
  for item in string.gmatch(s or '', '[^,]+') do out[#out + 1] = item end
  return out
end

local function keep(expiries, key, hour)
  if retention > 0 then
    local at = (hour + 1) * 3600 + retention
    if (expiries[key] or 0) < at then expiries[key] = at end
  end
end

-- one use of `tag` in `hour`, credited to `memory`
local function use(org, memory, hour, tag)
  local bucket = P .. ':t:' .. hour .. ':' .. org
  redis.call('ZINCRBY', bucket, 1, tag)
  keep(buckets, bucket, hour)
  local c = P .. ':c:' .. memory
  redis.call('HINCRBY', c, hour .. '|' .. tag, 1)
  keep(contributions, c, hour)
end

local function take_back(bucket, member, n)
  if tonumber(redis.call('ZINCRBY', bucket, -tonumber(n), member)) <= 0 then
    redis.call('ZREM', bucket, member)
  end
end

local function forget(memory, org, member)
  local c = P .. ':c:' .. memory
  local added = redis.call('HGETALL', c)
  for i = 1, #added, 2 do
    local field, n = added[i], added[i + 1]
    if field ~= '_x' then
      local hour, tag = string.match(field, '^(%d+)|(.+)$')
      if hour then
        take_back(P .. ':t:' .. hour .. ':' .. org, tag, n)
      else
        take_back(P .. ':m:' .. field .. ':' .. org, member, n)
      end
    end
  end
  redis.call('DEL', c)
  redis.call('HDEL', TAGS, memory)
  contributions[c] = nil
end

for i = 6, #ARGV, 5 do
  local op, memory, org, hour, arg = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  if op == 'S' then
    redis.call('HSET', TAGS, memory, arg)
    for _, tag in ipairs(split(arg)) do use(org, memory, hour, tag) end
  elseif op == 'T' then
    local current = redis.call('HGET', TAGS, memory) or ''
    local has, added = {}, {}
    for _, tag in ipairs(split(current)) do has[tag] = true end
    for _, tag in ipairs(split(arg)) do
      if not has[tag] then has[tag] = true; added[#added + 1] = tag end
    end
    if #added > 0 then
      local joined = table.concat(added, ',')
      redis.call('HSET', TAGS, memory, current == '' and joined or (current .. ',' .. joined))
      for _, tag in ipairs(added) do use(org, memory, hour, tag) end
    end
  elseif op == 'U' then
    local gone, kept = {}, {}
    for _, tag in ipairs(split(arg)) do gone[tag] = true end
    for _, tag in ipairs(split(redis.call('HGET', TAGS, memory))) do
      if not gone[tag] then kept[#kept + 1] = tag end
    end
    if #kept > 0 then
      redis.call('HSET', TAGS, memory, table.concat(kept, ','))
    else
      redis.call('HDEL', TAGS, memory)
    end
  elseif op == 'R' then
    local bucket = P .. ':m:' .. hour .. ':' .. org
    redis.call('ZINCRBY', bucket, 1, arg)
    keep(buckets, bucket, hour)
    local c = P .. ':c:' .. memory
    redis.call('HINCRBY', c, hour, 1)
    keep(contributions, c, hour)
    for _, tag in ipairs(split(redis.call('HGET', TAGS, memory))) do use(org, memory, hour, tag) end
  elseif op == 'F' then
    forget(memory, org, arg)
  end
end

for key, at in pairs(buckets) do redis.call('EXPIREAT', key, at) end
for key, at in pairs(contributions) do
  local before = tonumber(redis.call('HGET', key, '_x') or '0')
  if at > before then
    redis.call('HSET', key, '_x', at)
    redis.call('EXPIREAT', key, at)
  end
end
return 'ok'
