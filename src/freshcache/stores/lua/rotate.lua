-- Start a new epoch: every entry stored so far misses from now on.
-- KEYS[1] epoch key   ARGV[1] the new epoch token
redis.call('SET', KEYS[1], ARGV[1])
return 1
