-- Give tags a new version: one sequence step shared by every tag of the call, and record the
-- invalidation-log rows the bump stands for (so a relay does not bump them a second time).
-- KEYS[1] epoch key   KEYS[2] sequence key
-- ARGV[1] tag key prefix   ARGV[2] a fresh epoch token, used only if the sequence was lost
-- ARGV[3] mark key prefix  ARGV[4] mark lifetime (ms)   ARGV[5] n, the number of marks
-- ARGV[6..5+n] marks (log row ids)   ARGV[6+n..] tags
-- Returns the new version, or 'applied' when every mark was already recorded (a relay bumped
-- those rows after they committed: bumping again would only cost their entries a second miss).
local n = tonumber(ARGV[5])
if n > 0 then
  local done = true
  for i = 6, 5 + n do
    if redis.call('EXISTS', ARGV[3] .. ARGV[i]) == 0 then
      done = false
      break
    end
  end
  if done then
    return 'applied'
  end
end
if #ARGV == 5 + n then
  -- Marks only (a write that invalidates nothing): no sequence step.
  for i = 6, 5 + n do
    redis.call('SET', ARGV[3] .. ARGV[i], 1, 'PX', ARGV[4])
  end
  return 'marked'
end
local epoch = redis.call('GET', KEYS[1])
local seq = redis.call('GET', KEYS[2])
if not epoch or not seq or not tonumber(seq) then
  epoch = ARGV[2]
  redis.call('SET', KEYS[1], epoch)
  if not tonumber(seq) then
    redis.call('SET', KEYS[2], 0)
  end
end
local version = epoch .. ':' .. redis.call('INCR', KEYS[2])
for i = 6, 5 + n do
  redis.call('SET', ARGV[3] .. ARGV[i], 1, 'PX', ARGV[4])
end
for i = 6 + n, #ARGV do
  redis.call('SET', ARGV[1] .. ARGV[i], version)
end
return version
