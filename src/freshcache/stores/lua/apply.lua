-- Apply invalidation-log rows: bump the tags of each row whose mark is not recorded yet, and
-- record the mark, so that the writer's own bump and every relay together bump a row once.
-- KEYS[1] epoch key   KEYS[2] sequence key
-- ARGV[1] tag key prefix   ARGV[2] a fresh epoch token, used only if the sequence was lost
-- ARGV[3] mark key prefix  ARGV[4] mark lifetime (ms)
-- ARGV[5..] rows, each as: mark, k (its number of tags), then its k tags
-- Returns how many rows were bumped.
local epoch = redis.call('GET', KEYS[1])
local seq = redis.call('GET', KEYS[2])
if not epoch or not seq or not tonumber(seq) then
  epoch = ARGV[2]
  redis.call('SET', KEYS[1], epoch)
  if not tonumber(seq) then
    redis.call('SET', KEYS[2], 0)
  end
end
local applied = 0
local i = 5
while i <= #ARGV do
  local mark = ARGV[i]
  local k = tonumber(ARGV[i + 1])
  if redis.call('EXISTS', ARGV[3] .. mark) == 0 then
    local version = epoch .. ':' .. redis.call('INCR', KEYS[2])
    for j = i + 2, i + 1 + k do
      redis.call('SET', ARGV[1] .. ARGV[j], version)
    end
    redis.call('SET', ARGV[3] .. mark, 1, 'PX', ARGV[4])
    applied = applied + 1
  end
  i = i + 2 + k
end
return applied
