-- cache_lookup.lua: the query cache's reader side, for one org. Runs on Redis 6.2 and 7.x.
--
-- KEYS[1]  {ns:qc:<org>}:gen              hash: the org's cache generations
--            g:<scope>   generation of a scope ('org', 'a:<agent>', 't:<tag>'), bumped
--                        after each committed batch that changed a memory in the scope
--            i:<scope>   batches that changed the scope and have not finished committing
--            epoch       bumped to drop every entry of the org at once
--            hits, misses   lookup statistics
-- KEYS[2]  {ns:qc:<org>}:e:<query hash>   the entry's key without its generations; the
--                                         entry is KEYS[2] .. ':' .. <generations>
--
-- ARGV[1]  get | probe | put
-- get:  ARGV[2..] the query's scopes
--       returns {'hit', rows} | {'miss', generations} | {'busy'}: a batch touching a scope
--       is in flight, so nothing cached may be served or stored (a projector crashed
--       between begin and end keeps it busy until its partition's next batch heals it)
-- probe: as get, but a miss or busy is not counted: the HTTP server's event loop probes for
--       a hit, and on anything else the query goes on to a `get` that counts it
-- put:  ARGV[2] ttl seconds, ARGV[3] rows, ARGV[4] the generations `get` returned,
--       ARGV[5..] the query's scopes
--       stores the rows under ARGV[4] only if the scopes are still there and idle;
--       returns 1 if stored, 0 if not

local function generations(first)
  local fields = {'epoch'}
  for i = first, #ARGV do
    fields[#fields + 1] = 'i:' .. ARGV[i]
    fields[#fields + 1] = 'g:' .. ARGV[i]
  end
  local values = redis.call('HMGET', KEYS[1], unpack(fields))
  local out = {values[1] or '0'}
  for j = 2, #values, 2 do
    if tonumber(values[j] or '0') > 0 then return nil end
    out[#out + 1] = values[j + 1] or '0'
  end
  return table.concat(out, '.')
end

if ARGV[1] == 'get' or ARGV[1] == 'probe' then
  local counted = ARGV[1] == 'get'
  local gens = generations(2)
  if not gens then
    if counted then redis.call('HINCRBY', KEYS[1], 'misses', 1) end
    return {'busy'}
  end
  local rows = redis.call('GET', KEYS[2] .. ':' .. gens)
  if rows then
    redis.call('HINCRBY', KEYS[1], 'hits', 1)
    return {'hit', rows}
  end
  if counted then redis.call('HINCRBY', KEYS[1], 'misses', 1) end
  return {'miss', gens}
end

if generations(5) ~= ARGV[4] then return 0 end
redis.call('SET', KEYS[2] .. ':' .. ARGV[4], ARGV[3], 'EX', tonumber(ARGV[2]))
return 1
