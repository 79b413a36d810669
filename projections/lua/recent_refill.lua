-- recent_refill.lua: warm the recent-messages read model with a conversation's last messages
-- as read from PostgreSQL (after a miss), without touching the log. Runs on Redis 6.2 and 7.x.
--
-- KEYS[1]  {ns:pN}:rm:recent_messages:live                         the live pointer
-- KEYS[2]  {ns:pN}:rm:recent_messages:<label>:m:<org>/<agent>/<session>   the list to fill
-- KEYS[3]  {ns:pN}:rm:recent_messages:<label>:n                    hash: conversation -> head seq
--
-- ARGV[1]  the label KEYS[2] and KEYS[3] are of (the generation the reader read)
-- ARGV[2]  the conversation '<org>/<agent>/<session>'
-- ARGV[3]  the seq of the last message PostgreSQL holds
-- ARGV[4]  ttl in milliseconds
-- ARGV[5..] the entries '<seq>|<json>', oldest first, ending at ARGV[3] (at most the cap)
--
-- Fills only an absent list, and only when the projector's head for the conversation is
-- the one PostgreSQL read: the list is then exactly what the projection would hold (a
-- suffix ending at the head). A PostgreSQL read model behind or ahead of this one fills
-- nothing (the next miss tries again).
--
-- Returns 'filled', 'present' (a list is there: only its TTL is refreshed), 'behind' or 'moved'.

if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'moved' end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]))
  return 'present'
end
if redis.call('HGET', KEYS[3], ARGV[2]) ~= ARGV[3] or #ARGV < 5 then return 'behind' end
redis.call('RPUSH', KEYS[2], unpack(ARGV, 5, #ARGV))
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]))
return 'filled'
