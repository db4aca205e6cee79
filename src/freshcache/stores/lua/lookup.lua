-- Look an entry up and validate it, or take a snapshot on a miss: one round trip either way.
-- KEYS[1] entry key   KEYS[2] epoch key   KEYS[3] sequence key
-- ARGV[1] tag key prefix   ARGV[2] a fresh epoch token, used only if the sequence was lost
-- Returns {1, payload, tag, tag, ...} for a valid entry, else {0, epoch, seq}.
-- An entry is valid when it was stored in the current epoch and every tag still has the
-- version recorded in it; a missing tag version matches nothing. Invalid entries are deleted.
local epoch = redis.call('GET', KEYS[2])
local seq = redis.call('GET', KEYS[3])
if not seq or not epoch then
  -- The sequence (or its epoch) was evicted or flushed: versions could repeat, so start a
  -- new epoch. Entries of the old one can never validate again.
  epoch = ARGV[2]
  redis.call('SET', KEYS[2], epoch)
  if not seq then
    seq = '0'
    redis.call('SET', KEYS[3], 0)
  end
end
-- An entry is one string: "<epoch>\n<n>\n" + n bytes of "tag\tversion\n" lines + the payload.
-- A plain string costs the payload plus a few bytes per tag (a hash would cost a slot per
-- field). Anything that does not parse is treated as invalid, never as an error.
local raw = redis.call('GET', KEYS[1])
if raw then
  local valid = false
  local payload
  local names = {}
  local e1 = string.find(raw, '\n', 1, true)
  local e2 = e1 and string.find(raw, '\n', e1 + 1, true)
  local n = e2 and tonumber(string.sub(raw, e1 + 1, e2 - 1))
  if n and string.sub(raw, 1, e1 - 1) == epoch and e2 + n <= #raw then
    valid = true
    local packed = string.sub(raw, e2 + 1, e2 + n)
    payload = string.sub(raw, e2 + n + 1)
    for name, version in string.gmatch(packed, '([^\t\n]+)\t([^\n]+)\n') do
      if redis.call('GET', ARGV[1] .. name) ~= version then
        valid = false
        break
      end
      names[#names + 1] = name
    end
  end
  if valid then
    local out = {1, payload}
    for i = 1, #names do
      out[#out + 1] = names[i]
    end
    return out
  end
  redis.call('DEL', KEYS[1])
end
return {0, epoch, seq}
