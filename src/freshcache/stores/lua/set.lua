-- Store an entry unless a tag it depends on moved after the snapshot (the stale-set guard).
-- KEYS[1] entry key   KEYS[2] epoch key   KEYS[3] sequence key   KEYS[4] sequence copy key
-- ARGV[1] tag key prefix   ARGV[2] snapshot epoch   ARGV[3] snapshot sequence
-- ARGV[4] time to live in ms (0: none)   ARGV[5] payload   ARGV[6] a fresh nonce
-- ARGV[7] a fresh epoch token, used only if the position is unusable   ARGV[8..] tags
-- Returns {stored (1 or 0), status} (status: see _position.lua).
-- With a time to live, the entry expires after it and every tag version it records is kept at
-- least as long (fc_keep), so no tag version expires before an entry that recorded it.
-- Tag versions are "<epoch>:<seq>." (bumps) or "<epoch>:<seq>:<nonce>." (first sightings).
-- The final dot makes them prefix-free: a version cut short (garbage) is never another version
-- that some entry may have recorded, and it does not parse, so it counts as missing.
-- A tag with no version of this epoch (never bumped, evicted, older epoch, or a key holding
-- anything else: another type, another application's value) gets one at the current position,
-- unique by its nonce, which no later snapshot takes for a bump; the entry is then stored only
-- if nothing was bumped since the snapshot, because the missing version may have been a bump
-- that was lost.
local epoch, seq, status = fc_position(KEYS[2], KEYS[3], KEYS[4], ARGV[7])
if epoch ~= ARGV[2] then
  return {0, status}
end
local snap = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local unchanged = tonumber(seq) == snap
local mine = epoch .. ':'
local prefix_len = #mine
local recorded = {}
local refuse = false
local first_sighting = mine .. seq .. ':' .. ARGV[6] .. '.'
for i = 8, #ARGV do
  local key = ARGV[1] .. ARGV[i]
  local version = fc_string(key)
  local at
  if version and string.sub(version, 1, prefix_len) == mine then
    local rest = string.sub(version, prefix_len + 1)
    at = string.match(rest, '^(%d+)%.$') or string.match(rest, '^(%d+):%x+%.$')
  end
  if at then
    if tonumber(at) > snap then
      return {0, status}
    end
  else
    if not unchanged then
      refuse = true
    end
    version = first_sighting
    fc_put(key, version, ttl)
  end
  recorded[#recorded + 1] = version
end
if refuse then
  return {0, status}
end
-- Tags never contain a tab or a newline (tags.py digests anything that is not printable ASCII).
local packed = {}
for i = 8, #ARGV do
  packed[#packed + 1] = ARGV[i] .. '\t' .. recorded[i - 7] .. '\n'
end
local header = table.concat(packed)
local value = epoch .. '\n' .. #header .. '\n' .. header .. ARGV[5]
-- The entry first: at maxmemory under noeviction Redis refuses a script's first write that may
-- grow memory (SET), but lets every later one through, and PEXPIRE (fc_keep) is not such a
-- write. Written after it, the entry would be stored past maxmemory.
fc_put(KEYS[1], value, ttl)
for i = 8, #ARGV do
  fc_keep(ARGV[1] .. ARGV[i], ttl)
end
return {1, status}
