-- Apply invalidation-log rows: bump the tags of each row whose mark is not recorded yet, and
-- record the mark, so that the writer's own bump and every relay together bump a row once.
-- KEYS[1] epoch key   KEYS[2] sequence key   KEYS[3] sequence copy key
-- ARGV[1] tag key prefix   ARGV[2] a fresh epoch token, used only if the position is unusable
-- ARGV[3] mark key prefix  ARGV[4] mark lifetime (ms)   ARGV[5] tag version lifetime (ms, 0:
-- none)   ARGV[6] the near caches' channel
-- ARGV[7..] rows, each as: mark, k (its number of tags), then its k tags
-- Publishes each bumped row's tags as bump.lua does (near caches).
-- Returns {bumped rows, status, receivers, the marks of the bumped rows, hold} (status: see
-- _position.lua; hold: see bump.lua). A mark key holding anything but
-- this epoch's token is not a mark (see fc_marked): its row is bumped, never skipped.
local epoch, _, status = fc_position(KEYS[1], KEYS[2], KEYS[3], ARGV[2])
local applied = 0
local receivers = 0
local bumped = {}
local tag_ttl = tonumber(ARGV[5])
local i = 7
while i <= #ARGV do
  local mark = ARGV[i]
  local k = tonumber(ARGV[i + 1])
  if not fc_marked(ARGV[3] .. mark, epoch) then
    local version = epoch .. ':' .. fc_step(KEYS[2], KEYS[3]) .. '.'
    local names = {}
    for j = i + 2, i + 1 + k do
      fc_put(ARGV[1] .. ARGV[j], version, tag_ttl)
      names[#names + 1] = ARGV[j]
    end
    if k > 0 then
      receivers = receivers + redis.call(FC_PUBLISH, ARGV[6], version .. '\n' .. table.concat(names, '\n'))
    end
    redis.call('SET', ARGV[3] .. mark, epoch, 'PX', ARGV[4])
    applied = applied + 1
    bumped[#bumped + 1] = mark
  end
  i = i + 2 + k
end
return {applied, status, receivers, bumped, fc_hold(KEYS[1])}
