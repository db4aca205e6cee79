
-- Redis Cluster only (stores/redis_cluster.py): loaded after _position.lua, before the script.
-- The fence of lua/fence.lua, run inside every script that reads the position, since a cluster
-- client may keep a connection to a node whose role changed under it (a replica it asked for
-- the slot map, promoted since). The server key sits beside the epoch key (<base>:server).
-- A server that is not the one the epoch was started on (a promoted replica that may lack
-- acknowledged bumps, a master restarted from an older file) starts a new epoch first: every
-- entry of the old one misses. A server key holding something else than a run id is status 2.
FC_PUBLISH = 'SPUBLISH'
-- Milliseconds bumps on a server wait after it took over an epoch's keys from another server
-- (a failover): near caches listen to the shard's master, and one still subscribed to the old
-- master does not hear the new one's bumps. Each process's near cache stops serving once three
-- of its heartbeats went unanswered, and near_heartbeat is at most 0.25 s on a cluster
-- (stores/redis_options.py), so after this hold every near cache that could still serve what
-- a bump here invalidates has stopped, or has subscribed here (and emptied itself).
local FC_HOLD_MS = 1000
fc_hold = function(epoch_key)
  local left = redis.call('PTTL', string.sub(epoch_key, 1, -7) .. ':hold')
  if left > 0 then
    return left
  end
  return 0
end
-- How often the guard runs at most, per shard: an eighth of the node timeout, at most 250 ms
-- (a healthy master's PONGs are up to half the node timeout old, plus a cron tick of 100 ms).
-- It counts a master as heard when its PONG is younger than the node timeout less this, so a
-- master cut off from the others (not hung) stops before the node timeout has passed, before
-- its replica can be promoted, even if its last check passed just before.
local FC_GUARD_EVERY_MS = math.min(250, math.floor(fc_node_timeout_ms / 8))
-- The quorum guard (see fc_position below); now_ms: this server's TIME in milliseconds.
-- Returns this node's config epoch (CLUSTER NODES), which changes when it takes slots over.
local function fc_quorum(now_ms)
  local masters, heard, master, config = 0, 0, false, ''

  for line in string.gmatch(redis.call('CLUSTER', 'NODES'), '[^\n]+') do
    -- <id> <ip:port@bus> <flags> <master> <ping-sent> <pong-recv> <config-epoch> <link> <slot>...
    local flags, pong, epoch, slots = string.match(
      line, '^%S+ %S+ (%S+) %S+ %d+ (%d+) (%d+) %S+ ?(.*)$')
    if flags and string.find(',' .. flags .. ',', ',master,', 1, true) then
      local myself = string.find(flags, 'myself', 1, true)
      if myself then
        master = true
        config = epoch
      end
      if string.find(slots, '%d') then
        masters = masters + 1
        if myself or (not string.find(flags, 'fail', 1, true)
            and now_ms - tonumber(pong) < fc_node_timeout_ms - FC_GUARD_EVERY_MS) then
          heard = heard + 1
        end
      end
    end
  end
  if not master or heard <= masters / 2 then
    error({err = 'FCQUORUM this node is not a master that heard from a majority of the masters '
      .. 'within node_timeout (' .. fc_node_timeout_ms .. ' ms): ' .. heard .. ' of ' .. masters})
  end
  return config
end
local fc_position_unfenced = fc_position
fc_position = function(epoch_key, seq_key, copy_key, fresh)
  -- The quorum guard, before anything else: refuse (an error reply, the client's
  -- StoreUnavailable: a bypass, or a bump replayed from the invalidation log) unless this node
  -- is a master that has had a PONG, within the cluster's node timeout (fc_node_timeout_ms,
  -- written before this file by stores/redis_lua.py), from a majority of the masters serving
  -- slots, itself included. A master that hung (SIGSTOP, a stalled VM) longer than the node
  -- timeout may have been replaced by its replica; when it resumes it runs the scripts waiting
  -- in its sockets before it reads the cluster-bus messages that demote it. Its PONG times are
  -- then as old as the hang (a PONG is timed when it is read), so those scripts are refused:
  -- a bump it would acknowledge and then lose, a hit older than a write the promoted replica
  -- acknowledged. This is the quorum Redis itself applies (a master that reaches no majority
  -- of masters declares the cluster down), read when the script runs instead of from the
  -- flags that the node's cron updates only after those scripts have run.
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  -- The guard reads CLUSTER NODES (tens of microseconds): run it when this shard's alive key
  -- (the server's TIME when the guard last passed here) is older than FC_GUARD_EVERY_MS, or
  -- unreadable, or ahead of the clock. A master can only have been replaced after it was
  -- unreachable for the node timeout, longer than that, so the first script it runs when it
  -- resumes finds the key old and runs the guard. The key is written with pcall: a full Redis
  -- (noeviction) refusing it costs the guard on every script, not the script.
  -- The key also holds the node's config epoch as the guard last read it ("<ms>:<epoch>"): a
  -- node whose config epoch changed since took the slots over (a failover, a failback to the
  -- same server, which the run id below cannot tell) and holds its bumps (FC_HOLD_MS) while
  -- near caches still listening to the node it took over from stop serving.
  local alive_key = string.sub(epoch_key, 1, -7) .. ':alive'
  local last, last_config = string.match(fc_string(alive_key) or '', '^(%d+):?(%d*)$')
  local alive = tonumber(last or '')
  if not alive or now_ms - alive > FC_GUARD_EVERY_MS or now_ms < alive then
    local config = fc_quorum(now_ms)
    if last_config and last_config ~= '' and last_config ~= config then
      redis.pcall('SET', string.sub(epoch_key, 1, -7) .. ':hold', '1', 'PX', FC_HOLD_MS)
    end
    redis.pcall('SET', alive_key, now_ms .. ':' .. config)
  end
  local info = redis.call('INFO', 'server')
  local run_id = string.match(info, 'run_id:(%x+)')
  local fenced = 0
  if run_id then
    local server_key = string.sub(epoch_key, 1, -7) .. ':server'
    local server, other = fc_string(server_key)
    if server ~= run_id then
      fc_new_epoch(epoch_key, seq_key, copy_key, fresh)
      redis.call('SET', server_key, run_id)
      fenced = 1
      -- Also when the server key is missing: a promoted replica may lack it with the rest.
      redis.call('SET', string.sub(epoch_key, 1, -7) .. ':hold', '1', 'PX', FC_HOLD_MS)
      if other or (server and not string.match(server, '^%x+$')) then
        fenced = 2
      end
    end
  end
  local token, seq, status = fc_position_unfenced(epoch_key, seq_key, copy_key, fresh)
  if fenced > status then
    status = fenced
  end
  return token, seq, status
end

