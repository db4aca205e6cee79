-- Give tags a new version: one sequence step shared by every tag of the call, and record the
-- invalidation-log rows the bump stands for (so a relay does not bump them a second time).
-- KEYS[1] epoch key   KEYS[2] sequence key   KEYS[3] sequence copy key
-- ARGV[1] tag key prefix   ARGV[2] a fresh epoch token, used only if the position is unusable
-- ARGV[3] mark key prefix  ARGV[4] mark lifetime (ms)   ARGV[5] tag version lifetime (ms, 0:
-- none; set.lua lengthens it for the entries that record the version)
-- ARGV[6] the near caches' channel   ARGV[7] n, the number of marks
-- ARGV[8..7+n] marks (log row ids)   ARGV[8+n..] tags
-- Publishes "<version>\n<tag>\n<tag>..." on the channel named ARGV[6] (near caches).
-- Returns {result, status, receivers, hold} (receivers: near caches the message was sent to;
-- hold: milliseconds the writer waits before returning, see fc_hold): result is the new version, 'applied' when every mark was already
-- recorded (a relay bumped those rows after they committed: bumping again would only cost
-- their entries a second miss), or 'marked' for marks without tags; status: see _position.lua.
-- A tag key or a mark key holding anything (another type, another value) is overwritten; a
-- mark holds its epoch's token, and is recognised only by it (see fc_marked).
local epoch, _, status = fc_position(KEYS[1], KEYS[2], KEYS[3], ARGV[2])
local n = tonumber(ARGV[7])
local tag_ttl = tonumber(ARGV[5])
if n > 0 then
  local done = true
  for i = 8, 7 + n do
    if not fc_marked(ARGV[3] .. ARGV[i], epoch) then
      done = false
      break
    end
  end
  if done then
    return {'applied', status, 0, 0}
  end
end
-- Marks without tags (a write that invalidates nothing) take no sequence step.
local result = 'marked'
local receivers = 0
if #ARGV > 7 + n then
  result = epoch .. ':' .. fc_step(KEYS[2], KEYS[3]) .. '.'
  local names = {}
  for i = 8 + n, #ARGV do
    fc_put(ARGV[1] .. ARGV[i], result, tag_ttl)
    names[#names + 1] = ARGV[i]
  end
  -- Near caches (stores/near.py) drop what depends on these tags. Sent before the reply.
  receivers = redis.call(FC_PUBLISH, ARGV[6], result .. '\n' .. table.concat(names, '\n'))
end
for i = 8, 7 + n do
  redis.call('SET', ARGV[3] .. ARGV[i], epoch, 'PX', ARGV[4])
end
return {result, status, receivers, fc_hold(KEYS[1])}
