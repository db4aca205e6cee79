-- Give a lease back (compare and delete): only the token that holds it may, so a holder whose
-- lease expired never deletes the lease of the caller that took it over.
-- KEYS[1] lease key   ARGV[1] the holder's token
-- Returns 1 if the lease was deleted, 0 if the token did not hold it (any other value or type
-- under the key is left as it is).
if fc_string(KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
