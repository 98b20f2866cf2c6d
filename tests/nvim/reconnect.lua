-- Scenario: the daemon is killed (kill -9 of the pid from orch/status) and started again while
-- Neovim runs. The plugin reconnects, and the events it missed meanwhile are replayed from the
-- last seq it saw: its event log equals the daemon's, with no event missing or twice.
local H = dofile(os.getenv("ORCH_REPO") .. "/tests/nvim/helpers.lua")
H.init()

--- Sequence numbers of an event list.
local function seqs(events)
  return vim.tbl_map(function(ev)
    return ev.seq
  end, events)
end

--- The daemon's events after `since`, all pages.
local function daemon_events(since)
  local all, cursor = {}, nil
  for _ = 1, 50 do
    local res, err = H.call("orch/events/query", { since = since, limit = 1000, cursor = cursor })
    if not res then
      return nil, err
    end
    vim.list_extend(all, res.items or {})
    cursor = res.nextCursor
    if not cursor or cursor == vim.NIL then
      break
    end
  end
  return all
end

H.run(function()
  -- A slow first reconnect leaves time to make events happen while the plugin is away.
  H.setup({ reconnect = { initial_ms = 2000, max_ms = 4000 } })
  local Orch = require("orch")
  local conn = Orch.conn()

  vim.cmd("Orch spawn shell")
  local first
  H.wait("an agent is spawned", 30000, function()
    first = conn.state:agent_list()[1]
    return first ~= nil
  end, H.notes_text)
  if not first then
    return
  end
  vim.cmd("Orch events")
  local evbuf = require("orch.ui.events").views[conn.root].buf
  H.wait("the event log shows the spawn", 5000, function()
    return H.text(evbuf):find("agent.spawned", 1, true)
  end, function()
    return H.text(evbuf)
  end)

  local status = conn:request_sync("orch/status", {}, 5000)
  H.check("orch/status gives the daemon's pid", status and type(status.pid) == "number", vim.inspect(status))
  if not status then
    return
  end
  local first_seq = conn.state.events[1] and conn.state.events[1].seq or 1
  local client_before = conn.client_id

  vim.system({ "kill", "-9", tostring(status.pid) }):wait()
  H.wait("the plugin notices the daemon died", 15000, function()
    return conn.client_id ~= client_before or not conn:is_connected()
  end)

  -- Start the daemon again ourselves and make events while the plugin waits to reconnect.
  vim.system({ H.bin, "serve" }, { cwd = H.ws, detach = true, stdout = false, stderr = false })
  local away
  H.wait("the restarted daemon answers the CLI", 20000, function()
    return (H.call("orch/status", {})) ~= nil
  end)
  away = H.call("orch/agent/spawn", { kind = "shell", name = "while-away" })
  H.check("an agent is spawned through the CLI while the plugin is away", away and away.name == "while-away", vim.inspect(away))

  H.wait("the plugin reconnects", 30000, function()
    return conn:is_connected() and conn.connects >= 2
  end, function()
    return ("connects=%d attempts=%d"):format(conn.connects, conn.attempts)
  end)
  H.wait("events made while away are replayed", 15000, function()
    return vim.iter(conn.state.events):any(function(ev)
      return ev.kind == "agent.spawned" and away and ev.subject == away.id
    end)
  end, function()
    return table.concat(
      vim.tbl_map(function(ev)
        return ev.seq .. ":" .. ev.kind
      end, conn.state.events),
      ", "
    )
  end)
  H.wait("the first agent, killed with the daemon, is shown lost", 15000, function()
    local a = conn.state.agents[first.id]
    return a and a.state == "lost"
  end, function()
    return vim.inspect(conn.state.agents[first.id])
  end)

  -- Live events keep coming on the new connection.
  vim.cmd("Orch spawn shell")
  H.wait("live events follow the replay", 30000, function()
    return vim.iter(conn.state.agents):any(function(_, a)
      return a.id ~= first.id and (not away or a.id ~= away.id)
    end)
  end)

  -- Our log equals the daemon's: nothing missing, nothing twice.
  local theirs, err = nil, nil
  H.wait("the daemon's event log is readable", 10000, function()
    theirs, err = daemon_events(first_seq - 1)
    return theirs and #theirs > 0 and (conn.state.last_seq or 0) >= theirs[#theirs].seq
  end, function()
    return ("err=%s ours last=%s theirs last=%s"):format(
      tostring(err),
      tostring(conn.state.last_seq),
      theirs and theirs[#theirs] and tostring(theirs[#theirs].seq) or "-"
    )
  end)
  -- Compare up to the daemon's last event: more may have arrived since the query.
  local last = theirs and theirs[#theirs] and theirs[#theirs].seq or 0
  local mine = vim.tbl_filter(function(seq)
    return seq <= last
  end, seqs(conn.state.events))
  H.check("no event missing or duplicated", theirs and vim.deep_equal(mine, seqs(theirs)), function()
    return ("ours=%s theirs=%s"):format(vim.inspect(mine), vim.inspect(theirs and seqs(theirs)))
  end)
  H.check("the sequence has no gap", #conn.state.gaps == 0, vim.inspect(conn.state.gaps))
  local function shown()
    local list = {}
    for _, line in ipairs(vim.api.nvim_buf_get_lines(evbuf, 0, -1, false)) do
      local seq = tonumber(line:match("^%s*(%d+)"))
      if seq then
        list[#list + 1] = seq
      end
    end
    return list
  end
  H.wait("the event log buffer shows each event once, in order", 5000, function()
    return vim.deep_equal(shown(), seqs(conn.state.events))
  end, function()
    return ("buffer=%s state=%s"):format(vim.inspect(shown()), vim.inspect(seqs(conn.state.events)))
  end)
end)
