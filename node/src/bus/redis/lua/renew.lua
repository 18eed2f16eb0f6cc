-- Renews a node's lease, if it still holds it, and writes its heartbeat for the admin API.
-- KEYS: nodes zset, this node's lease, this node's room index, this node's node-info, this
--       node's limbo (then events.lua's)
-- ARGV: node, epoch, lease ms, record TTL ms, touch rooms (1/0), room key prefix,
--       node-info JSON ('' for none), node-info TTL ms
-- Settles the limbo once due (see events.lua): whoever was not written again left meanwhile
-- (`left`, as the other nodes' rooms tell their clients when they repair their membership).
-- Returns 1, or 0 when the lease is gone (expired and reaped, or Redis lost it): the node must
-- register again.
if redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('SET', KEYS[2], ARGV[2], 'PX', lease)
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
if ARGV[7] ~= '' then
  redis.call('SET', KEYS[4], ARGV[7], 'PX', tonumber(ARGV[8]))
end
if ARGV[5] == '1' then
  -- Rooms outlive no crash by more than their TTL; live rooms are kept alive here, rarely.
  for _, room in ipairs(redis.call('HKEYS', KEYS[3])) do
    redis.call('PEXPIRE', ARGV[6] .. room, ttl)
  end
end
local due = redis.call('HGET', KEYS[5], LIMBO_UNTIL)
if due and now >= tonumber(due) then
  settle_limbo(KEYS[5], 'left')
end
return 1
