-- Takes a new lease for a node and clears what its earlier leases left behind.
-- KEYS: epoch counter, nodes zset, this node's lease, this node's room index, this node's limbo
--       (then events.lua's)
-- ARGV: node, lease ms, record TTL ms, room key prefix, fresh (1 = a new process), control channel,
--       limbo settle delay ms
-- For the webhooks, the records it clears go to the node's limbo (see events.lua): the members
-- it still has are written again at once and nothing is reported; one that left meanwhile (its
-- leave refused while the node had no lease or no connection) is reported `peer.left` then.
-- A new process's are gone for good: reported `peer.left` `node-lost` at once.
-- Returns the new epoch.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local node, lease, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local epoch = redis.call('INCR', KEYS[1])
-- Records of an earlier lease are stale: a live member is written again (re-asserted) under
-- the new epoch right after this, a departed one must not linger. (The loop is records.lua's,
-- shared with reap.lua and goodbye.lua: prepended to each rather than a Redis Functions
-- library, which would be replaced by whichever node version loaded it last during a rolling
-- upgrade.)
local _, rooms = clear_records(KEYS[4], ARGV[4], node, function(key, room, peer, record)
  if ARGV[5] == '1' then
    member_left(key, room, peer, record, 'node-lost')
  else
    into_limbo(KEYS[5], key, room, peer, record)
  end
end)
redis.call('DEL', KEYS[4])
if ARGV[5] == '1' then
  settle_limbo(KEYS[5], 'node-lost')
elseif redis.call('EXISTS', KEYS[5]) == 1 then
  redis.call('HSET', KEYS[5], LIMBO_UNTIL, now + tonumber(ARGV[7]))
  redis.call('PEXPIRE', KEYS[5], ttl)
end
-- A new process under an old node id (a restarted pod): whoever still shows the old
-- incarnation's members must drop them, before this incarnation's joins arrive.
if ARGV[5] == '1' and rooms > 0 then
  redis.call('PUBLISH', ARGV[6], 'lost ' .. node)
end
redis.call('SET', KEYS[3], epoch, 'PX', lease)
redis.call('ZADD', KEYS[2], now + lease, node)
redis.call('PEXPIRE', KEYS[2], ttl)
return epoch
