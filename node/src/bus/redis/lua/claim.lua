-- Takes a parked session, at most once.
-- KEYS: the parked key
-- Returns the session's JSON (and deletes it), 'pending' while its node is still parking it,
-- or nil if there is no such token.
local v = redis.call('GET', KEYS[1])
if not v then
  return false
end
if v == 'pending' then
  return 'pending'
end
redis.call('DEL', KEYS[1])
return v
