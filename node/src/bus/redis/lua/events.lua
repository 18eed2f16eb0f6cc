-- Webhook events, recorded in the same step as the membership change they describe (so a
-- node killed right after loses none, and each room's events are in the order Redis applied
-- the changes). Prepended to every membership script when it is loaded.
-- KEYS (the script's last two): the events stream, the "gateways deliver webhooks" marker
-- Nothing is recorded while no gateway delivers webhooks (the marker has expired). An entry is
-- the event's fields as they vary (type, room; peer, node, user; reason): its stream id gives
-- the gateways its time and, with the cluster's name, its `id` (see gateway/src/webhook/stream.rs).
local EVENTS, EVENTS_ON = KEYS[#KEYS - 1], KEYS[#KEYS]
local recording = nil
local function record_event(kind, room, peer, record, reason)
  if recording == nil then
    recording = redis.call('EXISTS', EVENTS_ON) == 1
  end
  if not recording then
    return
  end
  if string.sub(room, 1, #'@SEED_PREFIX@') == '@SEED_PREFIX@' then
    room = string.sub(room, #'@SEED_PREFIX@' + 1)
  end
  local fields = {'type', kind, 'room', room}
  if peer then
    local node, body = string.match(record, '^([^|]*)|[^|]*|(.*)$')
    fields[#fields + 1], fields[#fields + 2] = 'peer', peer
    fields[#fields + 1], fields[#fields + 2] = 'node', node or ''
    -- Only a record with a token user is decoded (an anonymous one has no `"n":"`).
    if body and string.find(body, '"n":"', 1, true) then
      local ok, b = pcall(cjson.decode, body)
      if ok and type(b) == 'table' and type(b.n) == 'string' then
        fields[#fields + 1], fields[#fields + 2] = 'user', b.n
      end
    end
  end
  if reason then
    fields[#fields + 1], fields[#fields + 2] = 'reason', reason
  end
  -- Capped: a receiver down for long must not fill Redis (and refuse joins). The gateways
  -- count what the cap drops before delivery (docs/operations.md#webhooks).
  redis.call('XADD', EVENTS, 'MAXLEN', '~', '1000000', '*', unpack(fields))
end
-- A member was added to a room that held `before` members.
local function member_joined(room, peer, record, before)
  if before == 0 then
    record_event('room.started', room)
  end
  record_event('peer.joined', room, peer, record)
end
-- A member was removed from the room at `key`; the room finished if it is empty now.
local function member_left(key, room, peer, record, reason)
  record_event('peer.left', room, peer, record, reason)
  if redis.call('HLEN', key) == 0 then
    record_event('room.finished', room)
  end
end
-- The records a re-registration clears (the node lost its lease, or only its connection to
-- Redis) wait in the node's limbo (peer -> room key, room, record) instead of being reported:
-- a member the node still has is written again right after (join.lua takes it out, reporting
-- nothing), one it has not is reported `peer.left` when the limbo is settled (renew.lua, some
-- seconds later; reap.lua and goodbye.lua settle a departing node's at once).
local LIMBO_UNTIL = '@until'
local function into_limbo(limbo, key, room, peer, record)
  if recording == nil then
    recording = redis.call('EXISTS', EVENTS_ON) == 1
  end
  if recording then
    redis.call('HSET', limbo, peer, key .. '\n' .. room .. '\n' .. record)
  end
end
local function settle_limbo(limbo, reason)
  local entries = redis.call('HGETALL', limbo)
  for i = 1, #entries, 2 do
    local key, room, record = string.match(entries[i + 1], '^([^\n]*)\n([^\n]*)\n(.*)$')
    if key and redis.call('HEXISTS', key, entries[i]) == 0 then
      member_left(key, room, entries[i], record, reason)
    end
  end
  redis.call('DEL', limbo)
end
