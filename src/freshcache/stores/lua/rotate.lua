-- Start a new epoch: every entry stored so far misses from now on.
-- KEYS[1] epoch key   KEYS[2] sequence key   KEYS[3] sequence copy key
-- ARGV[1] the new epoch token
-- Returns 1. (A sequence that is not an integer restarts at 0 here too: see _position.lua.)
fc_new_epoch(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
return 1
