-- Take the lease on an entry (single flight, flight.py): one holder until it releases it or
-- the lease expires.
-- KEYS[1] lease key   ARGV[1] a fresh token (16 hex digits)   ARGV[2] time to live in ms
-- ARGV[3] the longest time to live a lease can have, in ms (MAX_LEASE_SECONDS)
-- Returns 1 if the token now holds the lease, 0 if another token holds it.
-- A lease is 16 hex digits with a time to live. Anything else under the key (another type,
-- another application's value, a string without a time to live or with one longer than any
-- lease, which would block for ever or for hours)
-- is garbage: it is replaced, never trusted to block anyone.
local value = fc_string(KEYS[1])
if value and #value == 16 and string.match(value, '^%x+$') then
  local left = redis.call('PTTL', KEYS[1])
  if left > 0 and left <= tonumber(ARGV[3]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
