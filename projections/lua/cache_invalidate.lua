-- cache_invalidate.lua: the query cache's writer side, for one org, run by the memories
-- projector around the commit of a batch. Runs on Redis 6.2 and 7.x.
--
-- KEYS[1]  {ns:qc:<org>}:gen   hash: the org's cache generations (see cache_lookup.lua);
--                              this script also keeps w:<token> -> the comma-joined
--                              scopes of a batch between its begin and its end
--
-- ARGV[1]  begin | end
-- ARGV[2]  the batch's token (unique per attempt)
-- begin:   ARGV[3..] the scopes the batch changes; each is marked in flight (i:<scope>
--          + 1) once per token, before the batch commits
-- end:     if the token began here: each of its scopes leaves flight and its generation
--          is bumped (g:<scope> + 1), after the batch committed (or failed); once per
--          token, so ending twice (a crash heal racing a late end) changes nothing
-- Returns 1 if the call changed something, 0 otherwise.

local w = 'w:' .. ARGV[2]
if ARGV[1] == 'begin' then
  if redis.call('HSETNX', KEYS[1], w, table.concat(ARGV, ',', 3)) == 0 then return 0 end
  for i = 3, #ARGV do redis.call('HINCRBY', KEYS[1], 'i:' .. ARGV[i], 1) end
  return 1
end

local scopes = redis.call('HGET', KEYS[1], w)
if not scopes then return 0 end
for scope in string.gmatch(scopes, '[^,]+') do
  if redis.call('HINCRBY', KEYS[1], 'i:' .. scope, -1) <= 0 then redis.call('HDEL', KEYS[1], 'i:' .. scope) end
  redis.call('HINCRBY', KEYS[1], 'g:' .. scope, 1)
end
redis.call('HDEL', KEYS[1], w)
return 1
