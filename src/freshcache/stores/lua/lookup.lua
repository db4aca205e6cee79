-- Look an entry up and validate it, or take a snapshot on a miss: one round trip either way.
-- KEYS[1] entry key   KEYS[2] epoch key   KEYS[3] sequence key   KEYS[4] sequence copy key
-- ARGV[1] tag key prefix   ARGV[2] a fresh epoch token, used only if the position is unusable
-- Returns {1, entry, start, tag, tag, ...} for a valid entry, where the payload is the entry's
-- bytes from index start (1-based: the caller slices it off; a copy of the payload in Lua cost
-- more than the rest of a hit), else {0, epoch, seq, status} (status: see _position.lua; 2
-- means a new epoch was started because the position held garbage).
-- An entry is valid when it was stored in the current epoch and every tag still has the
-- version recorded in it; a missing tag version matches nothing. Invalid entries are deleted.
-- Tag versions read per MGET (a Lua call takes at most a few thousand arguments).
local FC_MGET_BATCH = 256
local epoch, seq, status = fc_position(KEYS[2], KEYS[3], KEYS[4], ARGV[2])
-- An entry is one string: "<epoch>\n<n>\n" + n bytes of "tag\tversion\n" lines + the payload.
-- A plain string costs the payload plus a few bytes per tag (a hash would cost a slot per
-- field). Anything that does not parse (another type, another epoch, a truncated header, a
-- tag version of another type) is invalid, never an error.
local raw, other = fc_string(KEYS[1])
if raw then
  local valid = false
  local start
  local names = {}
  local e1 = string.find(raw, '\n', 1, true)
  local e2 = e1 and string.find(raw, '\n', e1 + 1, true)
  local digits = e2 and string.match(string.sub(raw, e1 + 1, e2 - 1), '^%d+$')
  local n = digits and tonumber(digits)
  if n and string.sub(raw, 1, e1 - 1) == epoch and e2 + n <= #raw then
    valid = true
    local packed = string.sub(raw, e2 + 1, e2 + n)
    start = e2 + n + 1
    local keys, versions = {}, {}
    for name, version in string.gmatch(packed, '([^\t\n]+)\t([^\n]+)\n') do
      names[#names + 1] = name
      keys[#keys + 1] = ARGV[1] .. name
      versions[#versions + 1] = version
    end
    -- The tag versions in batches of MGET (one command per FC_MGET_BATCH tags, where a GET
    -- each cost a command each: most of a hit's time in Redis on a page with many tags). MGET
    -- answers false for a key of another type: a mismatch, as missing. An error (a key of a
    -- slot that is moving away, on a cluster; an ACL user without MGET) is a mismatch too,
    -- with pcall: a miss for this entry, not a failed script (an outage for the whole store).
    local i = 1
    while valid and i <= #keys do
      local last = math.min(i + FC_MGET_BATCH - 1, #keys)
      local current = redis.pcall('MGET', unpack(keys, i, last))
      if type(current) ~= 'table' or current.err then
        valid = false
        break
      end
      for j = i, last do
        if current[j - i + 1] ~= versions[j] then
          valid = false
          break
        end
      end
      i = last + 1
    end
  end
  if valid then
    local out = {1, raw, start}
    for i = 1, #names do
      out[#out + 1] = names[i]
    end
    return out
  end
end
if raw or other then
  redis.call('DEL', KEYS[1])
end
return {0, epoch, seq, status}
