-- Start a new epoch when the server answering is not the one the epoch was last used on.
-- KEYS[1] epoch key   KEYS[2] server key (the run id of the server the epoch belongs to)
-- ARGV[1] this server's run id   ARGV[2] a fresh epoch token
-- Returns 1 if a new epoch was started, else 0.
-- A restart that loaded an older RDB/AOF file, or a failover to a replica that lagged, brings
-- tag versions and the sequence back in time: bumps acknowledged since that file was written
-- are gone, so entries they invalidated validate again and the sequence hands versions out a
-- second time. Run once per new connection (every client reconnects after a restart), before
-- any other command: every entry of the old epoch then misses. A missing server key (first
-- use, flushed, evicted) also starts a new epoch: that only costs misses.
if redis.call('GET', KEYS[2]) == ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[1])
return 1
