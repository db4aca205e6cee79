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
local fields = redis.call('HGETALL', KEYS[1])
if #fields > 0 then
  local payload, stored_epoch
  local names, versions = {}, {}
  for i = 1, #fields, 2 do
    local name = fields[i]
    if name == '\0p' then
      payload = fields[i + 1]
    elseif name == '\0e' then
      stored_epoch = fields[i + 1]
    else
      names[#names + 1] = name
      versions[#versions + 1] = fields[i + 1]
    end
  end
  local valid = payload ~= nil and stored_epoch == epoch
  if valid then
    for i = 1, #names do
      if redis.call('GET', ARGV[1] .. names[i]) ~= versions[i] then
        valid = false
        break
      end
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
