-- Read the sequence position (starting a new epoch if it is missing or unusable).
-- KEYS[1] epoch key   KEYS[2] sequence key   KEYS[3] sequence copy key
-- ARGV[1] a fresh epoch token
-- Returns {epoch, seq, status} (status: see _position.lua).
local epoch, seq, status = fc_position(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
return {epoch, seq, status}
