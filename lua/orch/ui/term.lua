--- Attached terminal views: a buffer made with `nvim_open_term` that shows an agent's terminal.
--- Attaching repaints from `Screen.ansi`, then follows `orch/terminal/output`; keystrokes go back
--- with `orch/terminal/write`, one write in flight at a time so they can never be reordered.
--- Closing the window unsubscribes and leaves the agent running.

local Config = require("orch.config")
local Util = require("orch.util")

local M = {}

---@class orch.Term
---@field agent orch.Agent
---@field tid string terminal id
---@field buf integer
---@field chan integer the nvim_open_term channel
---@field ready boolean the screen was painted: output from now on is news
---@field painted? boolean painted at least once: a repaint clears first
---@field queue string[] keystrokes waiting to be written
---@field writing boolean a write is in flight
---@field size? {cols: integer, rows: integer} last size sent

--- Everything an attached view is fed goes through here, so tests can read it back.
---@param term orch.Term
---@param data string
local function feed(term, data)
  if vim.api.nvim_buf_is_valid(term.buf) then
    pcall(vim.api.nvim_chan_send, term.chan, data)
  end
end

--- Turn a Screen without `ansi` into a repaint sequence.
---@param screen table
local function repaint_of(screen)
  if type(screen.ansi) == "string" and screen.ansi ~= "" then
    return screen.ansi
  end
  local s = "\27[H\27[2J" .. table.concat(screen.lines or {}, "\r\n")
  local cur = screen.cursor
  if type(cur) == "table" and cur.row then
    s = s .. ("\27[%d;%dH"):format(cur.row + 1, (cur.col or 0) + 1)
  end
  return s
end

---@param conn orch.Conn
---@param term orch.Term
---@param clear boolean clear first (a repaint over an existing view)
local function paint(conn, term, clear)
  conn:request("orch/agent/screen", { id = term.agent.id }, function(err, screen)
    if err then
      Util.error(("screen of %s: %s"):format(term.agent.name, Util.err_message(err)))
      return
    end
    if type(screen) ~= "table" then
      return
    end
    feed(term, (clear and "\27[0m\27[H\27[2J" or "") .. repaint_of(screen))
    term.ready = true
  end)
end

--- Send the window's size to the agent's terminal when it changed.
---@param conn orch.Conn
---@param term orch.Term
function M.resize(conn, term)
  if not Config.attach.resize then
    return
  end
  local win = Util.buf_win(term.buf)
  if not win then
    return
  end
  -- The terminal gets the text area: the window less its number/sign columns.
  local info = vim.fn.getwininfo(win)[1]
  local cols = vim.api.nvim_win_get_width(win) - (info and info.textoff or 0)
  local rows = vim.api.nvim_win_get_height(win)
  if term.size and term.size.cols == cols and term.size.rows == rows then
    return
  end
  term.size = { cols = cols, rows = rows }
  conn:request("orch/terminal/resize", { id = term.tid, cols = cols, rows = rows }, function(err)
    if err then
      -- A backend that cannot resize says so; the view still works at the agent's own size.
      term.size = nil
    end
  end)
end

--- Subscribe to the terminal and (re)paint it: on attach, and after a reconnect.
---@param conn orch.Conn
---@param term orch.Term
function M.resubscribe(conn, term)
  term.ready = false
  conn:request("orch/terminal/subscribe", { id = term.tid }, function(err)
    if err then
      Util.error(("attach %s: %s"):format(term.agent.name, Util.err_message(err)))
      return
    end
    -- Subscribed first, then the screen: output that arrives before the screen is dropped (the
    -- screen contains it), output after it is new.
    paint(conn, term, term.painted or false)
    term.painted = true
  end)
end

--- Keystrokes from the view: queue, and keep exactly one write in flight.
---@param conn orch.Conn
---@param term orch.Term
---@param data string
function M.input(conn, term, data)
  table.insert(term.queue, data)
  if term.writing then
    return
  end
  local function flush()
    if #term.queue == 0 then
      term.writing = false
      return
    end
    term.writing = true
    local chunk = table.concat(term.queue)
    term.queue = {}
    conn:request("orch/terminal/write", { id = term.tid, data = chunk }, function(err)
      if err then
        Util.error(("write to %s: %s"):format(term.agent.name, Util.err_message(err)))
        term.queue = {}
      end
      flush()
    end)
  end
  term.writing = true
  vim.schedule(flush)
end

--- `orch/terminal/output {id, data}` or `{id, resync = true}`.
---@param conn orch.Conn
---@param params table
function M.on_output(conn, params)
  if type(params) ~= "table" then
    return
  end
  local term = conn.terms[params.id]
  if not term then
    return
  end
  if params.resync then
    term.ready = false
    paint(conn, term, true)
  elseif term.ready and type(params.data) == "string" then
    feed(term, params.data)
  end
end

--- The view of `agent`, if attached.
---@param conn orch.Conn
---@param agent orch.Agent
---@return orch.Term?
function M.find(conn, agent)
  for _, term in pairs(conn.terms) do
    if term.agent.id == agent.id and vim.api.nvim_buf_is_valid(term.buf) then
      return term
    end
  end
end

--- Stop following a view's terminal; the agent keeps running.
---@param conn orch.Conn
---@param term orch.Term
function M.detach(conn, term)
  if conn.terms[term.tid] ~= term then
    return
  end
  conn.terms[term.tid] = nil
  if conn:is_connected() then
    conn:request("orch/terminal/unsubscribe", { id = term.tid }, function() end)
  end
end

--- Show `agent`'s terminal in a window.
---@param conn orch.Conn
---@param agent orch.Agent
---@return orch.Term?
function M.attach(conn, agent)
  local existing = M.find(conn, agent)
  if existing then
    Util.show(existing.buf, Config.win.attach)
    return existing
  end
  if not agent.terminalId then
    Util.error(("agent %s has no terminal"):format(agent.name or agent.id))
    return
  end
  local buf = vim.api.nvim_create_buf(false, true)
  ---@type orch.Term
  local term = {
    agent = agent,
    tid = agent.terminalId,
    buf = buf,
    chan = 0,
    ready = false,
    queue = {},
    writing = false,
  }
  Util.open_win(buf, Config.win.attach, agent.name)
  term.chan = vim.api.nvim_open_term(buf, {
    on_input = function(_, _, _, data)
      -- on_input runs under textlock: leave the callback before talking to the client.
      vim.schedule(function()
        M.input(conn, term, data)
      end)
    end,
  })
  pcall(vim.api.nvim_buf_set_name, buf, "orch://" .. (agent.name or agent.id))
  vim.bo[buf].bufhidden = "wipe"
  vim.b[buf].orch_agent = agent.id
  vim.b[buf].orch_terminal = agent.terminalId
  conn.terms[term.tid] = term

  local group = vim.api.nvim_create_augroup("orch.term." .. buf, { clear = true })
  vim.api.nvim_create_autocmd("BufWipeout", {
    group = group,
    buffer = buf,
    callback = function()
      M.detach(conn, term)
      pcall(vim.api.nvim_del_augroup_by_id, group)
    end,
  })
  vim.api.nvim_create_autocmd({ "WinResized", "VimResized" }, {
    group = group,
    callback = function()
      if conn.terms[term.tid] == term then
        M.resize(conn, term)
      end
    end,
  })

  M.resize(conn, term)
  M.resubscribe(conn, term)
  if Config.attach.startinsert then
    vim.cmd.startinsert()
  end
  return term
end

--- Follow an agent that now runs in another terminal (a restart): resubscribe and repaint.
---@param conn orch.Conn
---@param agent orch.Agent
function M.retarget(conn, agent)
  local term = M.find(conn, agent)
  if not term then
    return
  end
  term.agent = agent
  if term.tid == agent.terminalId then
    return
  end
  M.detach(conn, term)
  term.tid = agent.terminalId
  term.size = nil
  conn.terms[term.tid] = term
  vim.b[term.buf].orch_terminal = agent.terminalId
  M.resize(conn, term)
  M.resubscribe(conn, term)
end

--- Say in the view that its agent is gone (the view stays readable).
---@param conn orch.Conn
---@param agent_id string
---@param msg string
function M.annotate(conn, agent_id, msg)
  for _, term in pairs(conn.terms) do
    if term.agent.id == agent_id then
      feed(term, "\r\n\27[2m[orch] " .. msg .. "\27[0m\r\n")
    end
  end
end

return M
