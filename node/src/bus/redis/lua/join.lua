-- Records a member and tells the room's other nodes, reading them in the same step.
-- KEYS: this node's lease, the room, this node's room index, this node's limbo (then
--       events.lua's)
-- ARGV: node, epoch, peer, record, Joined message, record TTL ms, channel prefix, room name,
--       capacity (0: none), seat (the joiner's seed user id as JSON; '': no check),
--       the joiner's token user after '=' ('': anonymous)
-- Returns [n, peer, record, peer, record, ...]: n nodes received the Joined message, then the
-- other nodes' records; FENCED if the lease is not this node's any more; FULL if the room
-- already holds `capacity` members on all nodes together; SEAT if another member holds the
-- seed user id with an access token for another user, or for it while the joiner has none
-- (nothing is written after FULL or SEAT).
if redis.call('GET', KEYS[1]) ~= ARGV[2] then
  return redis.error_reply('FENCED')
end
local node, peer = ARGV[1], ARGV[3]
local entries = redis.call('HGETALL', KEYS[2])
local others, nodes, mine_before, existed, count = {}, {}, false, false, 0
for i = 1, #entries, 2 do
  local owner = string.match(entries[i + 1], '^([^|]*)|')
  if entries[i] == peer then
    mine_before = (owner == node)
    existed = true
  else
    count = count + 1
  end
  if owner ~= node then
    others[#others + 1] = entries[i]
    others[#others + 1] = entries[i + 1]
    nodes[owner] = true
  end
end
local capacity = tonumber(ARGV[9])
if capacity > 0 and count >= capacity then
  return redis.error_reply('FULL')
end
local seat = ARGV[10] or ''
if seat ~= '' then
  -- Records are `node|epoch|json`; only those naming the id as written are decoded.
  local needle, wanted = '"u":' .. seat, cjson.decode(seat)
  for i = 1, #entries, 2 do
    local record = entries[i + 1]
    if entries[i] ~= peer and string.find(record, needle, 1, true) then
      local ok, body = pcall(cjson.decode, string.match(record, '^[^|]*|[^|]*|(.*)$') or '')
      if ok and type(body) == 'table' and body.u == wanted
          and type(body.n) == 'string' and ('=' .. body.n) ~= ARGV[11] then
        return redis.error_reply('SEAT')
      end
    end
  end
end
redis.call('HSET', KEYS[2], peer, ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
-- Written again after a re-registration cleared it (see events.lua): it never left.
if not existed and redis.call('HDEL', KEYS[4], peer) == 0 then
  member_joined(ARGV[8], peer, ARGV[4], count)
end
if not mine_before then
  redis.call('HINCRBY', KEYS[3], ARGV[8], 1)
end
redis.call('PEXPIRE', KEYS[3], ARGV[6])
local told = 0
for owner in pairs(nodes) do
  if redis.call('PUBLISH', ARGV[7] .. owner, ARGV[5]) > 0 then
    told = told + 1
  end
end
table.insert(others, 1, told)
return others
