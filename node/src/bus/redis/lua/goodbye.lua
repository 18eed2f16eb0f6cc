-- A node leaving the cluster on purpose: removes its lease and whatever records it still has,
-- so nobody waits out its lease; if members were left (sessions that outlived the drain), the
-- other nodes are told the node is gone, as a reaper would.
-- KEYS: nodes zset, this node's lease, this node's room index, this node's node-info, this
--       node's limbo (then events.lua's)
-- ARGV: node, epoch, room key prefix, control channel
-- Returns the number of member records removed.
if redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return 0
end
local removed = clear_records(KEYS[3], ARGV[3], ARGV[1], function(key, room, peer, record)
  member_left(key, room, peer, record, 'shutdown')
end)
settle_limbo(KEYS[5], 'shutdown')
redis.call('DEL', KEYS[3], KEYS[2], KEYS[4])
redis.call('ZREM', KEYS[1], ARGV[1])
if removed > 0 then
  redis.call('PUBLISH', ARGV[4], 'lost ' .. ARGV[1])
end
return removed
