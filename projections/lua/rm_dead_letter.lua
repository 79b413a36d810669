-- rm_dead_letter.lua: record a poison event of a Redis read model and move its checkpoint
-- past it, atomically (the event is then skipped exactly once).
--
-- KEYS[1]  {ns:pN}:rm:<model>:<label>:cp   the generation's checkpoint (a stream id)
-- KEYS[2]  {ns:pN}:rm:<model>:live         the partition's live pointer (a label)
--
-- ARGV[1]  after: the checkpoint the caller read ('0-0' when none is stored)
-- ARGV[2]  the poison event's stream id: the new checkpoint
-- ARGV[3]  the caller's label; when not '', the pointer must name it ('' for a rebuild)
-- ARGV[4]  P, the generation's key prefix {ns:pN}:rm:<model>:<label>
-- ARGV[5]  the dead letter (JSON), appended to the list P:dead
--
-- Returns 'ok', 'fenced' (the checkpoint is not ARGV[1]) or 'moved' (the pointer names
-- another generation); nothing is written unless 'ok'.

if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then return 'moved' end
if (redis.call('GET', KEYS[1]) or '0-0') ~= ARGV[1] then return 'fenced' end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('RPUSH', ARGV[4] .. ':dead', ARGV[5])
return 'ok'
