--- Pickers through `vim.ui.select`/`vim.ui.input` for whatever a command misses: an agent, a
--- kind, a task, a decision, a subcommand. Each fetches fresh items from the daemon, so a picker
--- never offers something that is gone.

local Util = require("orch.util")

local M = {}

---@param items any[]
---@param opts table vim.ui.select options
---@param cb fun(item: any)
function M.select(items, opts, cb)
  vim.ui.select(items, opts, function(item)
    if item ~= nil then
      cb(item)
    end
  end)
end

---@param a orch.Agent
function M.format_agent(a)
  local branch = type(a.worktree) == "table" and ("  " .. require("orch.ui.list").branch(a)) or ""
  return ("%s  [%s]  %s%s"):format(a.name or a.id, a.kind or "?", a.state or "?", branch)
end

--- Pick an agent. `opts.filter(agent)` narrows the choice (e.g. running agents for send).
---@param conn orch.Conn
---@param opts {prompt?: string, filter?: fun(a: orch.Agent): boolean}
---@param cb fun(a: orch.Agent)
function M.agent(conn, opts, cb)
  conn:request("orch/agent/list", { limit = 1000 }, function(err, res)
    if err then
      Util.error(Util.err_message(err))
      return
    end
    local items = res and res.items or {}
    conn.state:set_agents(items)
    items = conn.state:agent_list()
    if opts.filter then
      items = vim.tbl_filter(opts.filter, items)
    end
    if #items == 0 then
      Util.warn("no agents" .. (opts.filter and " to choose from" or ": :Orch spawn <kind> starts one"))
      return
    end
    M.select(items, { prompt = opts.prompt or "orch agent", kind = "orch.agent", format_item = M.format_agent }, cb)
  end)
end

--- Pick an agent kind from the workspace configuration.
---@param conn orch.Conn
---@param cb fun(kind: string)
function M.kind(conn, cb)
  conn:request("orch/config/get", {}, function(err, cfg)
    local kinds
    if not err and type(cfg) == "table" and type(cfg.agents) == "table" then
      kinds = vim.tbl_keys(cfg.agents)
      table.sort(kinds)
      conn.state.kinds = kinds
    else
      kinds = conn.state.kinds or { "aider", "claude", "codex", "gemini", "shell" }
    end
    M.select(kinds, { prompt = "orch: spawn which kind?", kind = "orch.kind" }, cb)
  end)
end

---@param t table
function M.format_task(t)
  local agent = t.agentId and t.agentId ~= vim.NIL and ("  @" .. t.agentId) or ""
  return ("[%s] %s%s"):format(t.state or "?", t.title or t.id, agent)
end

--- Pick a task.
---@param conn orch.Conn
---@param cb fun(task: table)
function M.task(conn, cb)
  conn:request("orch/task/list", { limit = 1000 }, function(err, res)
    if err then
      Util.error(Util.err_message(err))
      return
    end
    local items = res and res.items or {}
    for _, t in ipairs(items) do
      conn.state.tasks[t.id] = t
    end
    if #items == 0 then
      Util.warn("no tasks: :Orch task new creates one")
      return
    end
    M.select(items, { prompt = "orch task", kind = "orch.task", format_item = M.format_task }, cb)
  end)
end

--- Pick a pending decision (skipped when there is exactly one).
---@param conn orch.Conn
---@param cb fun(decision: table)
function M.decision(conn, cb)
  conn:request("orch/decision/list", { state = "pending", limit = 1000 }, function(err, res)
    if err then
      Util.error(Util.err_message(err))
      return
    end
    local items = vim.tbl_filter(function(d)
      return d.state ~= "resolved"
    end, res and res.items or {})
    for _, d in ipairs(items) do
      conn.state.decisions[d.id] = d
    end
    if #items == 0 then
      Util.info("no pending decisions")
      return
    elseif #items == 1 then
      cb(items[1])
      return
    end
    M.select(items, {
      prompt = "orch decision",
      kind = "orch.decision",
      format_item = function(d)
        return d.title or d.id
      end,
    }, cb)
  end)
end

return M
