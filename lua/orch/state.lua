--- What one connection knows about its workspace: the agents, tasks and decisions it has seen, the
--- event log and the last sequence number applied. It is a cache of the daemon's state, fed only by
--- `orch/event` notifications and list results; it never asks the daemon anything itself. Events are
--- applied at most once, in `seq` order: that is what makes a reconnect replay safe.

local Config = require("orch.config")

---@class orch.Agent
---@field id string
---@field name string
---@field kind string
---@field command string[]
---@field cwd string
---@field sessionId string
---@field terminalId string
---@field backend string
---@field state string
---@field exitCode? integer
---@field pid? integer
---@field taskId? string
---@field restarts integer
---@field worktree? {path: string, branch: string, base: string, changes: integer, paused: boolean}
---@field createdAt string
---@field updatedAt string

---@class orch.Event
---@field seq integer
---@field time string
---@field kind string
---@field subject string
---@field data any

---@class orch.State
---@field agents table<string, orch.Agent> by id
---@field tasks table<string, table> by id
---@field decisions table<string, table> by id
---@field events orch.Event[] the log, ascending by seq, bounded by `events.max`
---@field last_seq? integer the highest seq applied; nil until the first subscription answered
---@field live_from? integer events up to this seq were history when we first connected: shown, not notified
---@field duplicates integer events received again and dropped (a replay overlapping what we had)
---@field gaps {after: integer, got: integer}[] holes in the sequence (none, with a correct daemon)
---@field kinds? string[] the workspace's agent kinds, from `orch/config/get`
---@field status? table the last `orch/status` result
---@field progress table<string|integer, table> `$/progress` values by token
---@field private _listeners fun(ev: orch.Event?)[]
---@field private _statusline? string cached; nil when it must be recomputed
local State = {}
State.__index = State

---@return orch.State
function State.new()
  return setmetatable({
    agents = {},
    tasks = {},
    decisions = {},
    events = {},
    duplicates = 0,
    gaps = {},
    progress = {},
    _listeners = {},
  }, State)
end

--- Call `fn(event)` after each applied event, and `fn(nil)` after a bulk refresh.
---@param fn fun(ev: orch.Event?)
---@return fun() unsubscribe
function State:on(fn)
  table.insert(self._listeners, fn)
  return function()
    for i, f in ipairs(self._listeners) do
      if f == fn then
        table.remove(self._listeners, i)
        return
      end
    end
  end
end

---@param ev orch.Event?
function State:_emit(ev)
  for _, fn in ipairs(vim.list_slice(self._listeners)) do
    local ok, err = pcall(fn, ev)
    if not ok then
      vim.schedule(function()
        vim.notify("orch: listener failed: " .. tostring(err), vim.log.levels.ERROR, { title = "orch" })
      end)
    end
  end
  if ev then
    vim.api.nvim_exec_autocmds("User", { pattern = "OrchEvent", modeline = false, data = ev })
  end
end

---@param data any
---@return table?
local function object(data, key)
  if type(data) ~= "table" then
    return nil
  end
  local o = data[key] or data
  return type(o) == "table" and o.id and o or nil
end

--- Replace the known agents with a list result.
---@param items orch.Agent[]
function State:set_agents(items)
  local agents = {}
  for _, a in ipairs(items or {}) do
    agents[a.id] = a
  end
  self.agents = agents
  self:_dirty()
  self:_emit(nil)
end

--- Add or replace one agent (a spawn, stop or get result).
---@param agent orch.Agent?
function State:put_agent(agent)
  if type(agent) == "table" and agent.id then
    self.agents[agent.id] = agent
    self:_dirty()
    self:_emit(nil)
  end
end

--- The agent named or identified by `ref`.
---@param ref string
---@return orch.Agent?
function State:find_agent(ref)
  if self.agents[ref] then
    return self.agents[ref]
  end
  for _, a in pairs(self.agents) do
    if a.name == ref then
      return a
    end
  end
end

--- The known agents, oldest first.
---@return orch.Agent[]
function State:agent_list()
  local list = vim.tbl_values(self.agents)
  table.sort(list, function(a, b)
    if (a.createdAt or "") ~= (b.createdAt or "") then
      return (a.createdAt or "") < (b.createdAt or "")
    end
    return a.id < b.id
  end)
  return list
end

--- Apply one event. Returns false when it was already applied (a replay overlap).
---@param ev orch.Event
---@return boolean applied
function State:apply(ev)
  if type(ev) ~= "table" or type(ev.seq) ~= "number" then
    return false
  end
  if self.last_seq and ev.seq <= self.last_seq then
    self.duplicates = self.duplicates + 1
    return false
  end
  if self.last_seq and ev.seq > self.last_seq + 1 then
    table.insert(self.gaps, { after = self.last_seq, got = ev.seq })
  end
  self.last_seq = ev.seq

  table.insert(self.events, ev)
  local max = Config.events.max
  if #self.events > max then
    self.events = vim.list_slice(self.events, #self.events - max + 1)
  end

  local kind, data = ev.kind or "", ev.data
  if vim.startswith(kind, "agent.") then
    local a = self.agents[ev.subject]
    local given = object(data, "agent")
    if given and given.name then
      self.agents[given.id] = vim.tbl_extend("force", a or {}, given)
      a = self.agents[given.id]
    end
    if a and type(data) == "table" then
      if kind == "agent.state" and data.state then
        a.state = data.state
        a.updatedAt = ev.time or a.updatedAt
        if data.exitCode ~= nil then
          a.exitCode = data.exitCode
        end
      elseif kind == "agent.exited" then
        a.exitCode = data.exitCode or data.code or a.exitCode
      elseif kind == "agent.restarted" then
        a.terminalId = data.terminalId or a.terminalId
        a.pid = data.pid
        a.restarts = data.restarts or a.restarts
      elseif kind == "agent.removed" or kind == "agent.deleted" then
        self.agents[ev.subject] = nil
      end
    end
    self:_dirty()
  elseif vim.startswith(kind, "worktree.") then
    -- The other worktree events change more of the Agent than they carry: the handler fetches it.
    local a = self.agents[ev.subject]
    if a and kind == "worktree.changed" and type(a.worktree) == "table" and type(data) == "table" then
      a.worktree.changes = tonumber(data.files) or a.worktree.changes
    end
    self:_dirty()
  elseif vim.startswith(kind, "task.") then
    local task = object(data, "task")
    if task and task.title then
      self.tasks[task.id] = vim.tbl_extend("force", self.tasks[task.id] or {}, task)
    elseif self.tasks[ev.subject] and type(data) == "table" and data.state then
      self.tasks[ev.subject].state = data.state
    end
  elseif kind == "config.reloaded" then
    self.kinds = nil -- completion asks again
  elseif vim.startswith(kind, "decision.") then
    local d = object(data, "decision")
    if d and d.options then
      self.decisions[d.id] = vim.tbl_extend("force", self.decisions[d.id] or {}, d)
    end
    local known = self.decisions[ev.subject]
    if known and kind == "decision.resolved" then
      known.state = "resolved"
      known.choice = type(data) == "table" and data.choice or known.choice
    end
  end
  self:_emit(ev)
  return true
end

--- Whether `ev` happened before this Neovim connected the first time (history, not news).
---@param ev orch.Event
function State:is_history(ev)
  return self.live_from ~= nil and ev.seq <= self.live_from
end

function State:_dirty()
  if self._statusline == nil then
    return
  end
  self._statusline = nil
  -- Redraw once per batch of events, not once per event.
  if not self._redraw then
    self._redraw = true
    vim.schedule(function()
      self._redraw = false
      pcall(vim.cmd.redrawstatus, { bang = true })
    end)
  end
end

--- Agent counts by state, e.g. `2 busy 1 waiting`; cached until an agent changes.
---@return string
function State:statusline()
  if self._statusline then
    return self._statusline
  end
  local counts = {}
  for _, a in pairs(self.agents) do
    counts[a.state] = (counts[a.state] or 0) + 1
  end
  local parts = {}
  for _, s in ipairs(Config.statusline.states) do
    if counts[s] then
      parts[#parts + 1] = counts[s] .. " " .. s
    end
  end
  self._statusline = table.concat(parts, " ")
  return self._statusline
end

return State
