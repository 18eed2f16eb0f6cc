-- Moves a resumed member from the node that parked it to this one, and tells the room's nodes
-- in the same step: the old node first (it hands over what it buffered), then every other node
-- holding members, then this node itself (a marker: membership events before it were sent to
-- the old node, those after it come here).
-- KEYS: this node's lease, the room, this node's room index, the old node's room index
-- ARGV: node, epoch, peer, record, Moved message, record TTL ms, channel prefix, room name,
--       old node
-- Returns [peer, record, ...]: the other nodes' members after the move; FENCED if the lease is
-- not this node's any more; GONE if the member is no longer the old node's (it left, its node
-- left the cluster, or the record expired): nothing is written then.
if redis.call('GET', KEYS[1]) ~= ARGV[2] then
  return redis.error_reply('FENCED')
end
local node, peer, old = ARGV[1], ARGV[3], ARGV[9]
local current = redis.call('HGET', KEYS[2], peer)
if not current or string.match(current, '^([^|]*)|') ~= old then
  return redis.error_reply('GONE')
end
redis.call('HSET', KEYS[2], peer, ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
redis.call('HINCRBY', KEYS[3], ARGV[8], 1)
redis.call('PEXPIRE', KEYS[3], ARGV[6])
if redis.call('HINCRBY', KEYS[4], ARGV[8], -1) <= 0 then
  redis.call('HDEL', KEYS[4], ARGV[8])
end
local entries = redis.call('HGETALL', KEYS[2])
local others, nodes = {}, {}
for i = 1, #entries, 2 do
  local owner = string.match(entries[i + 1], '^([^|]*)|')
  if owner ~= node then
    others[#others + 1] = entries[i]
    others[#others + 1] = entries[i + 1]
    if owner ~= old then
      nodes[owner] = true
    end
  end
end
redis.call('PUBLISH', ARGV[7] .. old, ARGV[5])
for owner in pairs(nodes) do
  redis.call('PUBLISH', ARGV[7] .. owner, ARGV[5])
end
redis.call('PUBLISH', ARGV[7] .. node, ARGV[5])
return others
