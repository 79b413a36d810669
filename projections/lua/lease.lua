-- lease.lua: take, renew or release the lease on one (projection, partition).
-- One active projector per (projection, partition): whoever holds the lease.
--
-- KEYS[1]  {ns:pN}:lease:<projection>   string: the holder's token, with a TTL
-- ARGV[1]  action: take | release
-- ARGV[2]  the caller's token
-- ARGV[3]  ttl in milliseconds (take)
--
-- take: succeeds if the lease is free or already the caller's, and (re)sets the TTL.
-- release: deletes the lease only if the caller holds it.
-- Returns 1 on success, 0 otherwise.

local holder = redis.call('GET', KEYS[1])
if ARGV[1] == 'take' then
  if holder and holder ~= ARGV[2] then return 0 end
  redis.call('SET', KEYS[1], ARGV[2], 'PX', tonumber(ARGV[3]))
  return 1
end
if holder == ARGV[2] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
