-- Prepended to every other script when it is loaded (stores/redis.py): reading keys that may
-- hold anything, and the sequence position with its epoch.
--
-- Any key under the prefix may hold a value freshcache did not write: another application's
-- key, a hand-typed `SET`, a value of another Redis type. A script never fails on one (a failed
-- script would cost every request a bypass): each key is read with redis.pcall, and a value
-- that is not what freshcache writes is treated as missing, never trusted.
--
-- The position is three keys: the epoch token (16 hex digits, random), the sequence (an
-- integer, stepped by INCR) and its copy (the highest value these scripts have seen it at,
-- written with every step). The position is usable when the token is a token and the sequence
-- an integer no lower than its copy (ahead of it: stepped by an older freshcache, or set forward
-- by hand, which keeps versions unique and in order). Otherwise the sequence cannot be trusted
-- to hand out versions in order and only once (a non-integer cannot even be stepped; an integer
-- set back would repeat versions that entries recorded), so a new epoch starts: every entry
-- misses once, and no version of the old epoch ever matches again. The status says why:
-- 1 when a key was missing (first use, FLUSHALL, eviction, an upgrade from a freshcache without
-- the copy: silent), 2 when a key held something freshcache did not write (another type, not an
-- integer, a sequence gone back; the client logs one warning). A new epoch keeps the sequence
-- when it is an integer (a process still running an older freshcache must never see it go
-- back) and restarts it at 0 when it is not.

-- The command near caches are told with (stores/redis_channel.py): classic pub/sub on one
-- Redis; on Redis Cluster (_cluster.lua) sharded pub/sub, delivered by the master running the
-- script to its own subscribers before the reply, as PUBLISH is on one server.
local FC_PUBLISH = 'PUBLISH'

-- Milliseconds bumps must still wait before their writer returns (the hold of _cluster.lua,
-- read by bump.lua and apply.lua): none on one Redis.
local function fc_hold(epoch_key)
  return 0
end

-- The string stored under key, or nil; the second result is true when the key holds a value
-- of another type.
local function fc_string(key)
  local value = redis.pcall('GET', key)
  if type(value) == 'string' then
    return value, false
  end
  return nil, value ~= false
end

-- An integer sequence value, as a string of at most 14 digits (Lua numbers are doubles, and
-- `..` prints 15 digits or more in exponent form), or nil.
local function fc_integer(value)
  if value and #value <= 14 and (value == '0' or string.match(value, '^[1-9]%d*$')) then
    return value
  end
  return nil
end

-- Start the epoch named token; return the sequence (a string of digits), kept if it is an
-- integer (see above), else restarted at 0.
local function fc_new_epoch(epoch_key, seq_key, copy_key, token)
  local seq = fc_integer(fc_string(seq_key))
  if not seq then
    seq = '0'
    redis.call('SET', seq_key, seq)
  end
  redis.call('SET', copy_key, seq)
  redis.call('SET', epoch_key, token)
  return seq
end

-- Return token, seq (a string of digits), status (0, 1 or 2, above), starting a new epoch
-- named fresh when the position cannot be used.
local function fc_position(epoch_key, seq_key, copy_key, fresh)
  local token, token_other = fc_string(epoch_key)
  local raw_seq, seq_other = fc_string(seq_key)
  local copy, copy_other = fc_string(copy_key)
  local seq = fc_integer(raw_seq)
  local floor = fc_integer(copy)
  local token_ok = token and #token == 16 and string.match(token, '^%x+$')
  if token_ok and seq and floor and tonumber(seq) >= tonumber(floor) then
    -- Ahead of its copy: stepped by an older freshcache, or set forward by hand. Versions stay
    -- unique and in order; the copy follows, so that a later step back is still seen.
    if seq ~= floor then
      redis.call('SET', copy_key, seq)
    end
    return token, seq, 0
  end
  local status = 1
  if token_other or seq_other or copy_other or (token and not token_ok)
      or (raw_seq and not seq) or (copy and not floor)
      or (seq and floor and tonumber(seq) < tonumber(floor)) then
    status = 2
  end
  return fresh, fc_new_epoch(epoch_key, seq_key, copy_key, fresh), status
end

-- Step the sequence of a usable position: the new value, as a string.
local function fc_step(seq_key, copy_key)
  local seq = tostring(redis.call('INCR', seq_key))
  redis.call('SET', copy_key, seq)
  return seq
end

-- True if the mark of an invalidation-log row was recorded in this epoch. A mark holds the
-- token of the epoch it was recorded in: anything else (another value, another type, an older
-- epoch) is not a mark, so the row is bumped again (one extra miss, never a lost bump).
local function fc_marked(key, token)
  return fc_string(key) == token
end


-- Tag versions and entries expire, so that Redis can evict them under `volatile-*` policies
-- (docs/internals.md, "Memory bounds"). Expiring either only ever causes misses: a missing tag
-- version matches nothing, and the first-sighting rule of set.lua covers a bump that expired.
-- The position keys (epoch, sequence, copy, server) never expire: they are four small keys, and
-- losing one starts a new epoch (every entry misses once).

-- SET key value, expiring after ttl ms (ttl 0: never).
local function fc_put(key, value, ttl)
  if ttl > 0 then
    redis.call('SET', key, value, 'PX', ttl)
  else
    redis.call('SET', key, value)
  end
end

-- Keep key at least ttl ms more (ttl 0: for ever); never shortens its life. A tag version must
-- outlive every entry that records it, or that entry would miss before its own TTL.
local function fc_keep(key, ttl)
  if ttl == 0 then
    redis.call('PERSIST', key)
    return
  end
  local left = redis.call('PTTL', key)
  if left >= 0 and left < ttl then
    redis.call('PEXPIRE', key, ttl)
  end
end
