-- Scenario: an agent whose screen matches a waiting pattern raises a decision; the decision
-- reaches vim.ui.select (stubbed here to capture the prompt and pick an option), and the answer
-- resolves it for every client; when another client answers first, a late answer here changes
-- nothing and says so. An agent that fails is notified.
local H = dofile(os.getenv("ORCH_REPO") .. "/tests/nvim/helpers.lua")
H.init()

H.run(function()
  vim.fn.writefile({
    "[agents.asker]",
    [=[command = ["bash", "-c", "printf 'Proceed? [y/N] '; read a; echo got-$a; exec sleep 120"]]=],
    [=[waiting_patterns = ["Proceed\\?"]]=],
    "",
    "[agents.failer]",
    [=[command = ["bash", "-c", "echo failing; sleep 0.5; exit 3"]]=],
  }, H.ws .. "/orch.toml")

  local chosen
  H.stub_select(function(items, opts)
    if opts.kind ~= "orch.decision" then
      return nil
    end
    -- Prefer an option that says yes; else the first.
    for _, it in ipairs(items) do
      local title = type(it) == "table" and it.title or tostring(it)
      if title:lower():match("^y") or title:lower():match("yes") or title:lower():match("proceed") then
        chosen = title
        return it
      end
    end
    chosen = type(items[1]) == "table" and items[1].title or items[1]
    return items[1]
  end)

  H.setup()
  local Orch = require("orch")
  local conn = Orch.conn()

  local kinds = vim.fn.getcompletion("Orch spawn ", "cmdline")
  H.check("completion lists kinds from orch.toml", vim.tbl_contains(kinds, "asker"), vim.inspect(kinds))

  vim.cmd("Orch spawn asker")
  local agent
  H.wait(":Orch spawn asker creates the agent", 30000, function()
    agent = conn.state:agent_list()[1]
    return agent ~= nil
  end, H.notes_text)
  if not agent then
    return
  end
  H.wait("the agent goes waiting", 20000, function()
    return conn.state.agents[agent.id].state == "waiting"
  end, function()
    return conn.state.agents[agent.id].state
  end)
  H.wait("waiting is notified", 5000, function()
    local n = H.note(agent.name .. " is waiting for you")
    return n and n.level == vim.log.levels.WARN and n.title == "orch"
  end, H.notes_text)

  H.wait("a decision.requested event arrives", 20000, function()
    return vim.iter(conn.state.events):any(function(ev)
      return ev.kind == "decision.requested"
    end)
  end, function()
    return table.concat(
      vim.tbl_map(function(ev)
        return ev.kind
      end, conn.state.events),
      ", "
    )
  end)
  H.wait("the pending decision is notified", 5000, function()
    return H.note("decision pending")
  end, H.notes_text)

  H.wait("the decision reaches vim.ui.select", 20000, function()
    return vim.iter(H.selects or {}):any(function(s)
      return s.kind == "orch.decision"
    end)
  end, function()
    return "no select; pending decisions: " .. vim.inspect(H.call("orch/decision/list", {}))
  end)
  local prompt = (vim.iter(H.selects or {}):find(function(s)
    return s.kind == "orch.decision"
  end) or {}).prompt
  H.check("the prompt shows the question", type(prompt) == "string" and prompt ~= "", vim.inspect(prompt))

  local decision
  H.wait("the answer resolves the decision", 20000, function()
    local res = H.call("orch/decision/list", {})
    local items = res and res.items or {}
    decision = vim.iter(items):find(function(d)
      return type(d.source) == "table" and d.source.id == agent.id
    end) or items[1]
    return decision and decision.state == "resolved"
  end, function()
    return vim.inspect(decision)
  end)
  if decision then
    H.check("the chosen option is recorded", decision.choice == chosen, vim.inspect({ chosen = chosen, decision = decision }))
  end
  H.wait("a decision.resolved event arrives", 10000, function()
    return vim.iter(conn.state.events):any(function(ev)
      return ev.kind == "decision.resolved"
    end)
  end)
  H.check("no decision request is left waiting", #require("orch.handlers").pending() == 0)
  H.wait("the answer reaches the agent", 10000, function()
    local screen = H.call("orch/agent/screen", { id = agent.id })
    return screen and vim.iter(screen.lines or {}):any(function(l)
      return l:match("^got%-%S+")
    end)
  end, function()
    return vim.inspect(H.call("orch/agent/screen", { id = agent.id }))
  end)

  -- First answer from any client wins: the CLI answers while our prompt is still open.
  local held
  vim.ui.select = function(items, opts, on_choice)
    held = { items = items, opts = opts, on_choice = on_choice }
  end
  vim.cmd("Orch spawn asker")
  local second
  H.wait("a second asker is spawned", 30000, function()
    second = vim.iter(conn.state:agent_list()):find(function(a)
      return a.id ~= agent.id and a.kind == "asker"
    end)
    return second ~= nil
  end, H.notes_text)
  H.wait("its decision is prompted", 20000, function()
    return held ~= nil and held.opts.kind == "orch.decision"
  end)
  local pending = second and H.call("orch/decision/list", { state = "pending" })
  local d2 = pending and vim.iter(pending.items or {}):find(function(d)
    return type(d.source) == "table" and d.source.id == second.id
  end)
  H.check("the second decision is pending", d2 ~= nil, vim.inspect(pending))
  if d2 and held then
    local other = d2.options[#d2.options]
    local res, cerr = H.call("orch/decision/resolve", { id = d2.id, choice = other })
    H.check("another client answers first", res and res.state == "resolved", cerr or vim.inspect(res))
    H.wait("the resolution reaches the plugin", 10000, function()
      return conn.state.decisions[d2.id] and conn.state.decisions[d2.id].state == "resolved"
    end)
    held.on_choice(held.items[1])
    H.wait("a late answer here says the decision was answered elsewhere", 5000, function()
      return H.note("already answered elsewhere: " .. other)
    end, H.notes_text)
    local after = H.call("orch/decision/list", {})
    local d = after and vim.iter(after.items or {}):find(function(x)
      return x.id == d2.id
    end)
    H.check("the first answer stands", d and d.choice == other, vim.inspect(d))
    H.check("no decision request is left waiting here", #require("orch.handlers").pending() == 0)
  end

  -- :Orch decide with nothing pending says so.
  vim.cmd("Orch decide")
  H.wait(":Orch decide with nothing pending says so", 5000, function()
    return H.note("no pending decisions")
  end, H.notes_text)

  -- A failing agent is notified at ERROR level.
  vim.cmd("Orch spawn failer")
  H.wait("an agent that fails is notified", 30000, function()
    for _, n in ipairs(H.notes) do
      if n.msg:match("^failer") and (n.msg:find("failed", 1, true) or n.msg:find("status 3", 1, true)) then
        return n.level == vim.log.levels.ERROR
      end
    end
  end, H.notes_text)
end)
