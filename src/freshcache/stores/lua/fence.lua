-- Start a new epoch when the server answering is not the one the epoch was last used on.
-- KEYS[1] epoch key   KEYS[2] server key (the run id of the server the epoch belongs to)
-- KEYS[3] sequence key   KEYS[4] sequence copy key   KEYS[5] hold key
-- ARGV[1] this server's run id   ARGV[2] a fresh epoch token   ARGV[3] hold (ms, 0: none)
-- Returns 0, or 1 if a new epoch was started, 2 if it was because the server key held
-- something else than a run id (another type, another application's value: the client warns).
-- A restart that loaded an older RDB/AOF file, or a failover to a replica that lagged, brings
-- tag versions and the sequence back in time: bumps acknowledged since that file was written
-- are gone, so entries they invalidated validate again and the sequence hands versions out a
-- second time. Run once per new connection (every client reconnects after a restart), before
-- any other command: every entry of the old epoch then misses. A missing server key (first
-- use, flushed, evicted), or one holding anything but a run id (another type, another
-- application's value), also starts a new epoch: that only costs misses.
local server, other = fc_string(KEYS[2])
if server == ARGV[1] then
  return 0
end
fc_new_epoch(KEYS[1], KEYS[3], KEYS[4], ARGV[2])
redis.call('SET', KEYS[2], ARGV[1])
-- Behind Sentinel, another server than the epoch's (a failover): bumps here wait until every
-- process had time to ask the sentinels and leave the old master (stores/redis_sentinel.py).
if server and tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[5], '1', 'PX', ARGV[3])
end
if other or (server and not string.match(server, '^%x+$')) then
  return 2
end
return 1
