-- Declares nodes whose lease ran out lost: removes their members from every room and tells
-- every node on the control channel. Safe to run on every node at once: a node is reaped once.
-- KEYS: nodes zset, the caller's lease (then events.lua's)
-- ARGV: lease key prefix, room index key prefix, room key prefix, control channel, max per run,
--       the caller's epoch, node-info key prefix, limbo key prefix
-- Returns the reaped node ids. A caller whose own lease has lapsed reaps nothing: it has been
-- out of touch (or Redis was), and others' leases may have lapsed for the same reason.
if redis.call('GET', KEYS[2]) ~= ARGV[6] then
  return {}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[5]))
for _, node in ipairs(dead) do
  redis.call('ZREM', KEYS[1], node)
  redis.call('DEL', ARGV[1] .. node, ARGV[7] .. node)
  local index = ARGV[2] .. node
  clear_records(index, ARGV[3], node, function(key, room, peer, record)
    member_left(key, room, peer, record, 'node-lost')
  end)
  redis.call('DEL', index)
  settle_limbo(ARGV[8] .. node, 'node-lost')
  redis.call('PUBLISH', ARGV[4], 'lost ' .. node)
end
return dead
