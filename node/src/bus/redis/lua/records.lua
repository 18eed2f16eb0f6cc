-- Code the membership scripts that clear a node's records share (prepended to them at load,
-- with events.lua; scripts loaded together, so two node versions never mix halves).
-- Removes `node`'s records from every room its index (`index`) lists, the room keys being
-- `room_prefix .. room`, calling `cleared(key, room, peer, record)` for each removed.
-- Returns the number removed and the number of rooms the index listed.
local function clear_records(index, room_prefix, node, cleared)
  local mine = node .. '|'
  local rooms = redis.call('HKEYS', index)
  local removed = 0
  for _, room in ipairs(rooms) do
    local key = room_prefix .. room
    local entries = redis.call('HGETALL', key)
    for i = 1, #entries, 2 do
      if string.sub(entries[i + 1], 1, #mine) == mine then
        redis.call('HDEL', key, entries[i])
        cleared(key, room, entries[i], entries[i + 1])
        removed = removed + 1
      end
    end
  end
  return removed, #rooms
end
