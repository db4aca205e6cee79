-- Store an entry unless a tag it depends on moved after the snapshot (the stale-set guard).
-- KEYS[1] entry key   KEYS[2] epoch key   KEYS[3] sequence key
-- ARGV[1] tag key prefix   ARGV[2] snapshot epoch   ARGV[3] snapshot sequence
-- ARGV[4] time to live in ms (0: none)   ARGV[5] payload   ARGV[6] a fresh nonce
-- ARGV[7..] tags
-- Returns 1 if stored, 0 if refused.
-- Tag versions are "<epoch>:<seq>" (bumps) or "<epoch>:<seq>:<nonce>" (first sightings).
-- A tag with no version of this epoch (never bumped, evicted, older epoch) gets one at the
-- current position, unique by its nonce, which no later snapshot takes for a bump; the entry
-- is then stored only if nothing was bumped since the snapshot, because the missing version
-- may have been a bump that was lost.
local epoch = redis.call('GET', KEYS[2])
local seq = redis.call('GET', KEYS[3])
if not seq or epoch ~= ARGV[2] then
  return 0
end
local snap = tonumber(ARGV[3])
local unchanged = tonumber(seq) == snap
local prefix_len = #epoch + 1
local recorded = {}
local refuse = false
local first_sighting = epoch .. ':' .. seq .. ':' .. ARGV[6]
for i = 7, #ARGV do
  local key = ARGV[1] .. ARGV[i]
  local version = redis.call('GET', key)
  if version and string.sub(version, 1, prefix_len) == epoch .. ':' then
    if tonumber(string.match(version, '^[^:]*:(%d+)')) > snap then
      return 0
    end
  else
    if not unchanged then
      refuse = true
    end
    version = first_sighting
    redis.call('SET', key, version)
  end
  recorded[#recorded + 1] = version
end
if refuse then
  return 0
end
-- Tags never contain a tab or a newline (tags.py digests anything that is not printable ASCII).
local packed = {}
for i = 7, #ARGV do
  packed[#packed + 1] = ARGV[i] .. '\t' .. recorded[i - 6] .. '\n'
end
local header = table.concat(packed)
local value = epoch .. '\n' .. #header .. '\n' .. header .. ARGV[5]
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('SET', KEYS[1], value, 'PX', ttl)
else
  redis.call('SET', KEYS[1], value)
end
return 1
