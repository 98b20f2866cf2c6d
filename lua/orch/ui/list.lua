--- The agents buffer (`:Orch list`): one line per agent with name, kind, state, task, branch (when
--- any agent has a worktree) and age, redrawn when an event changes an agent or its worktree.
--- Buffer-local keys attach, send, stop, restart and review (diff).

local Config = require("orch.config")
local Util = require("orch.util")

local M = {}

---@class orch.ListView
---@field conn orch.Conn
---@field buf integer
---@field rows table<integer, string> line number -> agent id
---@field unsubscribe fun()

---@type table<string, orch.ListView> by workspace root
M.views = {}

local ns = vim.api.nvim_create_namespace("orch.list")

local STATE_HL = {
  starting = "OrchStateStarting",
  running = "OrchStateRunning",
  idle = "OrchStateIdle",
  busy = "OrchStateBusy",
  waiting = "OrchStateWaiting",
  exited = "OrchStateExited",
  failed = "OrchStateFailed",
  stopped = "OrchStateStopped",
  lost = "OrchStateLost",
}

local function highlights()
  local links = {
    OrchStateStarting = "DiagnosticHint",
    OrchStateRunning = "DiagnosticInfo",
    OrchStateIdle = "DiagnosticOk",
    OrchStateBusy = "DiagnosticInfo",
    OrchStateWaiting = "DiagnosticWarn",
    OrchStateExited = "Comment",
    OrchStateFailed = "DiagnosticError",
    OrchStateStopped = "Comment",
    OrchStateLost = "DiagnosticError",
    OrchHeader = "Title",
  }
  for group, link in pairs(links) do
    vim.api.nvim_set_hl(0, group, { link = link, default = true })
  end
end

--- The lines of the list for `agents` (pure, for tests).
---@param agents orch.Agent[]
---@param tasks table<string, table>
---@return string[] lines
---@return {col: integer, len: integer, state: string}[] state cells by agent row
function M.format(agents, tasks)
  -- A BRANCH column only when it has something to say: most workspaces use no worktrees.
  local branches = vim.iter(agents):any(function(a)
    return type(a.worktree) == "table"
  end)
  local header = { "NAME", "KIND", "STATE", "TASK", "AGE" }
  if branches then
    header = { "NAME", "KIND", "STATE", "TASK", "BRANCH", "AGE" }
  end
  local rows = {}
  for _, a in ipairs(agents) do
    local task = "-"
    if a.taskId and a.taskId ~= vim.NIL then
      local t = tasks[a.taskId]
      task = t and t.title or a.taskId
      if #task > 30 then
        task = task:sub(1, 29) .. "…"
      end
    end
    local row = { a.name or a.id, a.kind or "-", a.state or "?", task }
    if branches then
      row[#row + 1] = M.branch(a)
    end
    row[#row + 1] = Util.age(a.createdAt)
    rows[#rows + 1] = row
  end
  local widths = {}
  for i, h in ipairs(header) do
    widths[i] = vim.fn.strdisplaywidth(h)
    for _, r in ipairs(rows) do
      widths[i] = math.max(widths[i], vim.fn.strdisplaywidth(r[i]))
    end
  end
  local function line(cells)
    local parts = {}
    for i, c in ipairs(cells) do
      parts[i] = i < #cells and (c .. string.rep(" ", widths[i] - vim.fn.strdisplaywidth(c))) or c
    end
    return table.concat(parts, "  ")
  end
  local lines, cells = { line(header) }, {}
  local state_col = widths[1] + 2 + widths[2] + 2
  for _, r in ipairs(rows) do
    lines[#lines + 1] = line(r)
    cells[#cells + 1] = { col = state_col, len = #r[3], state = r[3] }
  end
  if #rows == 0 then
    lines[#lines + 1] = "(no agents: :Orch spawn <kind>)"
  end
  return lines, cells
end

--- `orch/w1 (3)`: an agent's worktree branch and how many files it changed; `-` without one.
---@param a orch.Agent
---@return string
function M.branch(a)
  local w = a.worktree
  if type(w) ~= "table" then
    return "-"
  end
  return ("%s (%s%s)"):format(tostring(w.branch), tostring(w.changes or 0), w.paused == true and ", paused" or "")
end

---@param view orch.ListView
function M.render(view)
  if not vim.api.nvim_buf_is_valid(view.buf) then
    return
  end
  local agents = view.conn.state:agent_list()
  local lines, cells = M.format(agents, view.conn.state.tasks)
  view.rows = {}
  for i, a in ipairs(agents) do
    view.rows[i + 1] = a.id
  end
  Util.set_lines(view.buf, lines)
  vim.api.nvim_buf_clear_namespace(view.buf, ns, 0, -1)
  vim.api.nvim_buf_set_extmark(view.buf, ns, 0, 0, { end_col = #lines[1], hl_group = "OrchHeader" })
  for i, c in ipairs(cells) do
    vim.api.nvim_buf_set_extmark(view.buf, ns, i, c.col, {
      end_col = c.col + c.len,
      hl_group = STATE_HL[c.state] or "Normal",
    })
  end
end

--- The agent on the cursor line of the list.
---@param view orch.ListView
---@return orch.Agent?
function M.cursor_agent(view)
  local row = vim.api.nvim_win_get_cursor(0)[1]
  local id = view.rows[row]
  return id and view.conn.state.agents[id] or nil
end

---@param view orch.ListView
local function keymaps(view)
  local Orch = require("orch")
  local actions = {
    attach = function(a)
      Orch.attach(a.name)
    end,
    send = function(a)
      vim.ui.input({ prompt = ("send to %s: "):format(a.name) }, function(text)
        if text and text ~= "" then
          Orch.send(a.name, text)
        end
      end)
    end,
    stop = function(a)
      Orch.stop(a.name)
    end,
    restart = function(a)
      Orch.restart(a.name)
    end,
    diff = function(a)
      Orch.diff(a.name)
    end,
  }
  local descs = {
    attach = "attach to the agent's terminal",
    send = "send text to the agent",
    stop = "stop the agent",
    restart = "restart the agent",
    diff = "review the agent's worktree",
    refresh = "refresh the list",
    close = "close the list",
    help = "show these keys",
  }
  local keys = Config.list_keys
  for name, fn in pairs(actions) do
    if keys[name] then
      vim.keymap.set("n", keys[name], function()
        local a = M.cursor_agent(view)
        if a then
          fn(a)
        end
      end, { buffer = view.buf, nowait = true, desc = "orch: " .. descs[name] })
    end
  end
  if keys.refresh then
    vim.keymap.set("n", keys.refresh, function()
      view.conn:refresh_agents()
    end, { buffer = view.buf, nowait = true, desc = "orch: " .. descs.refresh })
  end
  if keys.close then
    vim.keymap.set("n", keys.close, function()
      local w = Util.buf_win(view.buf)
      if w and #vim.api.nvim_tabpage_list_wins(0) > 1 then
        vim.api.nvim_win_close(w, false)
      end
    end, { buffer = view.buf, nowait = true, desc = "orch: " .. descs.close })
  end
  if keys.help then
    vim.keymap.set("n", keys.help, function()
      local lines = {}
      for _, name in ipairs({ "attach", "send", "stop", "restart", "diff", "refresh", "close", "help" }) do
        if keys[name] then
          lines[#lines + 1] = ("%-8s %s"):format(keys[name], descs[name])
        end
      end
      Util.info(lines)
    end, { buffer = view.buf, nowait = true, desc = "orch: " .. descs.help })
  end
end

--- Open (or focus) the agents list of `conn`.
---@param conn orch.Conn
---@return orch.ListView
function M.open(conn)
  highlights()
  local view = M.views[conn.root]
  if not view or not vim.api.nvim_buf_is_valid(view.buf) then
    local buf = Util.scratch("orch://agents", "orch_list")
    view = { conn = conn, buf = buf, rows = {}, unsubscribe = function() end }
    M.views[conn.root] = view
    -- Render on the next loop iteration, once per batch of events.
    local scheduled = false
    view.unsubscribe = conn.state:on(function(ev)
      local kind = ev and ev.kind or ""
      if ev and not (vim.startswith(kind, "agent.") or vim.startswith(kind, "task.") or vim.startswith(kind, "worktree.")) then
        return
      end
      if not scheduled then
        scheduled = true
        vim.schedule(function()
          scheduled = false
          M.render(view)
        end)
      end
    end)
    -- Ages change without events: redraw every few seconds while the list is visible.
    local timer = assert(vim.uv.new_timer())
    timer:start(5000, 5000, vim.schedule_wrap(function()
      if vim.api.nvim_buf_is_valid(buf) and Util.buf_win(buf) then
        M.render(view)
      end
    end))
    vim.api.nvim_create_autocmd("BufWipeout", {
      buffer = buf,
      once = true,
      callback = function()
        timer:stop()
        timer:close()
        view.unsubscribe()
        if M.views[conn.root] == view then
          M.views[conn.root] = nil
        end
      end,
    })
    keymaps(view)
  end
  M.render(view)
  local win = Util.show(view.buf, Config.win.list, "orch agents")
  vim.wo[win].cursorline = true
  vim.wo[win].wrap = false
  conn:refresh_agents()
  return view
end

return M
