-- Scenario: `:Orch spawn shell` starts an agent the CLI sees; `:Orch list` shows it and follows
-- its state; completion offers agent names and kinds; `:Orch attach` paints the shell's prompt and
-- what is typed into the view reaches the shell; `:Orch send` (also from a range) types into it;
-- closing the view leaves the agent running; `:Orch restart` is followed by the view; the list's
-- stop key stops it and the list shows that.
local H = dofile(os.getenv("ORCH_REPO") .. "/tests/nvim/helpers.lua")
H.init()

H.run(function()
  H.setup({ win = { attach = { layout = "split", size = 20 } } })
  local Orch = require("orch")

  vim.cmd("Orch spawn shell")
  local conn = Orch.conn()
  local agent
  H.wait(":Orch spawn shell creates an agent", 30000, function()
    agent = conn.state:agent_list()[1]
    return agent ~= nil
  end, H.notes_text)
  if not agent then
    return
  end
  H.check("the agent is of kind shell", agent.kind == "shell", vim.inspect(agent))
  H.check("the connection is an LSP client named orch", #vim.lsp.get_clients({ name = "orch" }) == 1)
  H.wait("the spawn is notified", 3000, function()
    return H.note("spawned " .. agent.name)
  end, H.notes_text)

  local listed, err = H.call("orch/agent/list", {})
  H.check(
    "the CLI sees the agent",
    type(listed) == "table" and vim.iter(listed.items or {}):any(function(a)
      return a.id == agent.id and a.name == agent.name
    end),
    err or vim.inspect(listed)
  )

  -- The list, and its live updates: the shell goes quiet, so its state changes without us.
  vim.cmd("Orch list")
  local view = require("orch.ui.list").views[conn.root]
  H.check(":Orch list opens the agents buffer", view and vim.api.nvim_buf_is_valid(view.buf))
  local function row()
    for _, l in ipairs(vim.api.nvim_buf_get_lines(view.buf, 0, -1, false)) do
      if l:find(agent.name, 1, true) then
        return l
      end
    end
    return ""
  end
  H.wait(":Orch list shows the agent with name, kind, state, age", 5000, function()
    return row():match("^" .. vim.pesc(agent.name) .. "%s+shell%s+%a+%s+%S+%s+%d+[smhd]$")
  end, function()
    return H.text(view.buf)
  end)
  H.wait("the list follows state events (the quiet shell becomes idle)", 20000, function()
    return row():match("%sidle%s")
  end, function()
    return H.text(view.buf) .. " | events: " .. #conn.state.events
  end)
  H.wait("the statusline counts the agent", 5000, function()
    return Orch.statusline():match("%d+ idle")
  end, function()
    return Orch.statusline()
  end)

  -- Completion: subcommands, agent names, kinds from the daemon's config.
  local names = vim.fn.getcompletion("Orch attach ", "cmdline")
  H.check("completion lists agent names", vim.tbl_contains(names, agent.name), vim.inspect(names))
  local partial = vim.fn.getcompletion("Orch send " .. agent.name:sub(1, 2), "cmdline")
  H.check("completion filters agent names", vim.tbl_contains(partial, agent.name), vim.inspect(partial))
  local kinds = vim.fn.getcompletion("Orch spawn ", "cmdline")
  H.check(
    "completion lists the configured kinds",
    vim.tbl_contains(kinds, "shell") and vim.tbl_contains(kinds, "claude"),
    vim.inspect(kinds)
  )

  -- Attach: repaint, then live output and keystrokes.
  vim.cmd("Orch attach " .. agent.name)
  local Term = require("orch.ui.term")
  local term
  H.wait(":Orch attach opens a terminal view", 10000, function()
    term = Term.find(conn, agent)
    return term and term.ready
  end)
  if not term then
    return
  end
  H.check("the view is a terminal buffer", vim.bo[term.buf].buftype == "terminal")
  local function has_line(pattern)
    for _, l in ipairs(vim.api.nvim_buf_get_lines(term.buf, 0, -1, false)) do
      if l:match(pattern) then
        return true
      end
    end
  end
  H.wait("the view shows the shell's prompt", 15000, function()
    return has_line("[%$#]%s*$")
  end, function()
    return vim.inspect(vim.api.nvim_buf_get_lines(term.buf, 0, -1, false))
  end)

  -- What nvim_open_term's on_input receives when the user types in Terminal mode.
  Term.input(conn, term, "echo hi\r")
  H.wait("typing `echo hi` + Enter in the view shows hi", 15000, function()
    return has_line("^hi%s*$")
  end, function()
    return vim.inspect(vim.api.nvim_buf_get_lines(term.buf, 0, -1, false))
  end)

  vim.cmd("Orch send " .. agent.name .. " echo sent-$((6*7))")
  H.wait(":Orch send types into the agent (the view shows the output)", 15000, function()
    return has_line("^sent%-42%s*$")
  end, function()
    return vim.inspect(vim.api.nvim_buf_get_lines(term.buf, 0, -1, false))
  end)
  H.wait("the daemon's screen shows the output too", 10000, function()
    local screen = H.call("orch/agent/screen", { id = agent.name })
    return screen and vim.iter(screen.lines or {}):any(function(l)
      return l:match("^sent%-42")
    end)
  end)

  -- From a range of lines in a buffer.
  local src = vim.api.nvim_create_buf(true, false)
  vim.api.nvim_buf_set_lines(src, 0, -1, false, { "echo from-range-$((2+3))" })
  local term_win = vim.api.nvim_get_current_win()
  vim.cmd("new")
  vim.api.nvim_win_set_buf(0, src)
  vim.cmd("1Orch send " .. agent.name)
  H.wait(":[range]Orch send sends the lines", 15000, function()
    return has_line("^from%-range%-5%s*$")
  end, function()
    return vim.inspect(vim.api.nvim_buf_get_lines(term.buf, 0, -1, false))
  end)
  vim.cmd("close")
  vim.api.nvim_set_current_win(term_win)

  -- Closing the window unsubscribes; the agent keeps running; attaching again repaints.
  local win = require("orch.util").buf_win(term.buf)
  vim.api.nvim_win_close(win, true)
  H.wait("closing the view detaches it", 5000, function()
    return conn.terms[agent.terminalId] == nil and not vim.api.nvim_buf_is_valid(term.buf)
  end)
  local after = H.call("orch/agent/get", { id = agent.id })
  H.check(
    "the agent keeps running after the view closed",
    after and not vim.tbl_contains({ "exited", "failed", "stopped", "lost" }, after.state),
    vim.inspect(after)
  )
  vim.cmd("Orch attach " .. agent.name)
  H.wait("attaching again repaints what the shell printed", 15000, function()
    term = Term.find(conn, agent)
    return term and term.ready and has_line("^sent%-42%s*$")
  end, function()
    return term and vim.inspect(vim.api.nvim_buf_get_lines(term.buf, 0, -1, false)) or "no view"
  end)

  -- Restart: the agent is counted restarted, and the attached view follows it.
  vim.cmd("Orch restart " .. agent.name)
  H.wait(":Orch restart restarts the agent", 20000, function()
    local a = H.call("orch/agent/get", { id = agent.id })
    return a and a.restarts >= 1 and not vim.tbl_contains({ "exited", "failed", "stopped", "lost" }, a.state)
  end, function()
    return vim.inspect(H.call("orch/agent/get", { id = agent.id }))
  end)
  H.wait("the view follows the restarted agent", 15000, function()
    local a = conn.state.agents[agent.id]
    term = Term.find(conn, a)
    return term and term.tid == a.terminalId and term.ready and has_line("[%$#]%s*$")
  end, function()
    return term and vim.inspect(vim.api.nvim_buf_get_lines(term.buf, 0, -1, false)) or "no view"
  end)

  -- Stop with the list's key: the list follows.
  local list_win = require("orch.util").buf_win(view.buf)
  H.check("the list is still shown", list_win ~= nil)
  if list_win then
    vim.api.nvim_set_current_win(list_win)
    for i, l in ipairs(vim.api.nvim_buf_get_lines(view.buf, 0, -1, false)) do
      if l:find(agent.name, 1, true) then
        vim.api.nvim_win_set_cursor(list_win, { i, 0 })
      end
    end
    vim.api.nvim_feedkeys("x", "x", false)
  end
  H.wait("the list's stop key stops the agent, and the list shows it", 20000, function()
    return row():match("%sstopped%s") or row():match("%sexited%s")
  end, function()
    return H.text(view.buf)
  end)
  H.check("the stop arrived as an agent.state event", vim.iter(conn.state.events):any(function(ev)
    return ev.kind == "agent.state" and ev.subject == agent.id and (ev.data.state == "stopped" or ev.data.state == "exited")
  end))
  H.wait("the statusline no longer counts it", 5000, function()
    return not Orch.statusline():match("idle") and not Orch.statusline():match("busy")
  end, function()
    return Orch.statusline()
  end)
  H.check("no event was applied twice or skipped", #conn.state.gaps == 0, vim.inspect(conn.state.gaps))
end)
