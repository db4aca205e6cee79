-- Read the sequence position (starting a new epoch if the sequence was lost).
-- KEYS[1] epoch key   KEYS[2] sequence key   ARGV[1] a fresh epoch token
-- Returns {epoch, seq}.
local epoch = redis.call('GET', KEYS[1])
local seq = redis.call('GET', KEYS[2])
if not seq or not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch)
  if not seq then
    seq = '0'
    redis.call('SET', KEYS[2], 0)
  end
end
return {epoch, seq}
