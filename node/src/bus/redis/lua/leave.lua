-- Removes this node's member and tells the room's other nodes, reading them in the same step.
-- Never removes another node's member: a node only ever deletes what it wrote.
-- KEYS: this node's lease, the room, this node's room index (then events.lua's)
-- ARGV: node, epoch, peer, Left message, channel prefix, room name, reason
-- Returns 1 if removed, 0 if it was not there; FENCED if the lease is not this node's any more.
if redis.call('GET', KEYS[1]) ~= ARGV[2] then
  return redis.error_reply('FENCED')
end
local node = ARGV[1]
local record = redis.call('HGET', KEYS[2], ARGV[3])
if not record or string.sub(record, 1, #node + 1) ~= node .. '|' then
  return 0
end
redis.call('HDEL', KEYS[2], ARGV[3])
member_left(KEYS[2], ARGV[6], ARGV[3], record, ARGV[7])
if redis.call('HINCRBY', KEYS[3], ARGV[6], -1) <= 0 then
  redis.call('HDEL', KEYS[3], ARGV[6])
end
local nodes = {}
for _, v in ipairs(redis.call('HVALS', KEYS[2])) do
  local owner = string.match(v, '^([^|]*)|')
  if owner ~= node then
    nodes[owner] = true
  end
end
for owner in pairs(nodes) do
  redis.call('PUBLISH', ARGV[5] .. owner, ARGV[4])
end
return 1
