--- The event log buffer (`:Orch events`): one line per event, `seq time kind subject summary`,
--- appended as events arrive. It shows what the connection's state holds; it asks nothing.

local Config = require("orch.config")
local Util = require("orch.util")

local M = {}

---@type table<string, {buf: integer, shown: integer}> by workspace root
M.views = {}

--- A one-line summary of an event (pure, for tests).
---@param ev orch.Event
---@param state orch.State
---@return string
function M.format(ev, state)
  local data = type(ev.data) == "table" and ev.data or {}
  local subject = ev.subject or ""
  local a = state.agents[subject]
  local who = a and a.name or subject
  local summary
  if ev.kind == "agent.state" or ev.kind == "task.state" then
    summary = ("%s -> %s"):format(tostring(data.previous or "?"), tostring(data.state or "?"))
    if data.evidence then
      summary = summary .. " (" .. tostring(data.evidence) .. ")"
    end
  elseif ev.kind == "decision.requested" then
    local d = data.decision or data
    summary = tostring(d.title or "")
      .. (type(d.options) == "table" and (" [" .. table.concat(d.options, "/") .. "]") or "")
  elseif ev.kind == "decision.resolved" then
    summary = "choice: " .. tostring(data.choice or (data.decision and data.decision.choice) or "?")
  else
    local ok, json = pcall(vim.json.encode, ev.data)
    summary = ok and json or ""
    if summary == "null" or summary == "{}" or summary == "[]" then
      summary = ""
    end
  end
  summary = summary:gsub("\n", " ")
  if #summary > 160 then
    summary = summary:sub(1, 159) .. "…"
  end
  local time = type(ev.time) == "string" and ev.time:match("T(%d%d:%d%d:%d%d)") or ""
  return ("%6d %s %-18s %s %s"):format(ev.seq, time, ev.kind or "?", who, summary)
end

---@param conn orch.Conn
---@param view {buf: integer, shown: integer}
local function append(conn, view)
  if not vim.api.nvim_buf_is_valid(view.buf) then
    return
  end
  local lines = {}
  for _, ev in ipairs(conn.state.events) do
    if ev.seq > view.shown then
      lines[#lines + 1] = M.format(ev, conn.state)
      view.shown = ev.seq
    end
  end
  if #lines == 0 then
    return
  end
  local win = Util.buf_win(view.buf)
  local follow = not win or vim.api.nvim_win_get_cursor(win)[1] >= vim.api.nvim_buf_line_count(view.buf) - 1
  vim.bo[view.buf].modifiable = true
  local empty = vim.api.nvim_buf_line_count(view.buf) == 1
    and vim.api.nvim_buf_get_lines(view.buf, 0, 1, false)[1] == ""
  vim.api.nvim_buf_set_lines(view.buf, empty and 0 or -1, -1, false, lines)
  vim.bo[view.buf].modifiable = false
  if win and follow then
    vim.api.nvim_win_set_cursor(win, { vim.api.nvim_buf_line_count(view.buf), 0 })
  end
end

--- Open (or focus) the event log of `conn`.
---@param conn orch.Conn
function M.open(conn)
  local view = M.views[conn.root]
  if not view or not vim.api.nvim_buf_is_valid(view.buf) then
    view = { buf = Util.scratch("orch://events", "orch_events"), shown = -1 }
    M.views[conn.root] = view
    local scheduled = false
    local unsubscribe = conn.state:on(function(ev)
      if ev and not scheduled then
        scheduled = true
        vim.schedule(function()
          scheduled = false
          append(conn, view)
        end)
      end
    end)
    vim.api.nvim_create_autocmd("BufWipeout", {
      buffer = view.buf,
      once = true,
      callback = function()
        unsubscribe()
        M.views[conn.root] = nil
      end,
    })
  end
  -- Make sure the connection (and with it the subscription) exists.
  if not conn:is_connected() then
    conn:start()
  end
  append(conn, view)
  local win = Util.show(view.buf, Config.win.events, "orch events")
  vim.wo[win].wrap = false
  vim.api.nvim_win_set_cursor(win, { vim.api.nvim_buf_line_count(view.buf), 0 })
end

return M
