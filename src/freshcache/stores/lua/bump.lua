-- Give tags a new version: one sequence step shared by every tag of the call.
-- KEYS[1] epoch key   KEYS[2] sequence key
-- ARGV[1] tag key prefix   ARGV[2] a fresh epoch token, used only if the sequence was lost
-- ARGV[3..] tags
-- Returns the new version.
local epoch = redis.call('GET', KEYS[1])
local seq = redis.call('GET', KEYS[2])
if not seq or not epoch then
  epoch = ARGV[2]
  redis.call('SET', KEYS[1], epoch)
  if not seq then
    redis.call('SET', KEYS[2], 0)
  end
end
local version = epoch .. ':' .. redis.call('INCR', KEYS[2])
for i = 3, #ARGV do
  redis.call('SET', ARGV[1] .. ARGV[i], version)
end
return version
