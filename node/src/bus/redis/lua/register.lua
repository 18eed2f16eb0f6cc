-- Takes a new lease for a node and clears what its earlier leases left behind.
-- KEYS: epoch counter, nodes zset, this node's lease, this node's room index (then events.lua's)
-- ARGV: node, lease ms, record TTL ms, room key prefix, fresh (1 = a new process), control channel
-- The webhooks hear the records it clears as `peer.left` `node-lost` (the members a node
-- still has are written again right after, and heard as `peer.joined`): what the clients of
-- other nodes see too, and no leave refused meanwhile (the lease was gone) goes unreported.
-- Returns the new epoch.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local node, lease, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local epoch = redis.call('INCR', KEYS[1])
-- Records of an earlier lease are stale: a live member is written again (re-asserted) under
-- the new epoch right after this, a departed one must not linger. (reap.lua and goodbye.lua
-- repeat this loop: EVAL scripts cannot share code, and a Redis Functions library would be
-- replaced by whichever node version loaded it last during a rolling upgrade.)
local mine = node .. '|'
local rooms = redis.call('HKEYS', KEYS[4])
for _, room in ipairs(rooms) do
  local key = ARGV[4] .. room
  local entries = redis.call('HGETALL', key)
  for i = 1, #entries, 2 do
    if string.sub(entries[i + 1], 1, #mine) == mine then
      redis.call('HDEL', key, entries[i])
      member_left(key, room, entries[i], entries[i + 1], 'node-lost')
    end
  end
end
redis.call('DEL', KEYS[4])
-- A new process under an old node id (a restarted pod): whoever still shows the old
-- incarnation's members must drop them, before this incarnation's joins arrive.
if ARGV[5] == '1' and #rooms > 0 then
  redis.call('PUBLISH', ARGV[6], 'lost ' .. node)
end
redis.call('SET', KEYS[3], epoch, 'PX', lease)
redis.call('ZADD', KEYS[2], now + lease, node)
redis.call('PEXPIRE', KEYS[2], ttl)
return epoch
